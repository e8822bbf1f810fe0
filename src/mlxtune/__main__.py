"""`python -m mlxtune ...` (also what `accelerate launch -m mlxtune` runs)."""

from .cli import main

if __name__ == "__main__":
    main()
