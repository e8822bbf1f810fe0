"""`python -m mlxtune.cli ...`, as before the command line became a package."""

from . import main

if __name__ == "__main__":
    main()
