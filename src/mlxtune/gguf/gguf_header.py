"""A GGUF file's header, read and bounded in pure Python before MLX's reader sees the file.

MLX's reader (gguflib) trusts every count and length in the header: a tensor count of 3e9 or a
key length of 2**62 sends it reading far past the end of the file (a segfault, no message), a
dimension count of 2**31 aborts the process, and a tensor type it does not know is dropped
without a word. So every field is read here first and checked against what the file can hold;
any problem is one `MlxtuneError` naming the file, the field and its byte offset.

Layout (GGUF versions 2 and 3, little-endian): "GGUF", u32 version, u64 tensor count, u64
metadata count; the metadata (string key, u32 value type, value); the tensor infos (string
name, u32 dimension count, u64 dimensions, u32 ggml type, u64 offset into the data section);
padding to `general.alignment` (default 32); the data section. A string is a u64 length and
UTF-8 bytes; an array a u32 element type, a u64 count and the elements.
"""

from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from ..errors import MlxtuneError

MAGIC = b"GGUF"
VERSIONS = (2, 3)
MAX_DIMS = 4  # ggml's GGML_MAX_DIMS
MAX_NAME = 63  # ggml's GGML_MAX_NAME less the terminating NUL: llama.cpp refuses longer names
MAX_KEY = 1024
MAX_KV = 1 << 16
MAX_TENSORS = 1 << 20  # the largest mixture-of-experts files hold a few tens of thousands
MAX_ARRAY = 1 << 22  # vocabularies and merge lists hold under a million entries
DEFAULT_ALIGNMENT = 32
# smallest possible encodings, to bound the counts by the bytes left
MIN_KV_BYTES = 8 + 1 + 4 + 1  # a one-byte key, its type and a one-byte value
MIN_TENSOR_BYTES = 8 + 1 + 4 + 8 + 4 + 8  # a one-byte name, one dimension, type and offset

STRING, ARRAY, UINT32 = 8, 9, 4
SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q"}
SCALARS[12] = "d"
INTEGER_TYPES = frozenset({0, 1, 2, 3, 4, 5, 10, 11})
FLOAT_TYPES = frozenset({6, 12})

# ggml tensor types: number -> (name, values per block, bytes per block), as llama.cpp's
# ggml.c (the test checks them against the gguf package)
GGML_TYPES: dict[int, tuple[str, int, int]] = {
    0: ("F32", 1, 4),
    1: ("F16", 1, 2),
    2: ("Q4_0", 32, 18),
    3: ("Q4_1", 32, 20),
    6: ("Q5_0", 32, 22),
    7: ("Q5_1", 32, 24),
    8: ("Q8_0", 32, 34),
    9: ("Q8_1", 32, 40),
    10: ("Q2_K", 256, 84),
    11: ("Q3_K", 256, 110),
    12: ("Q4_K", 256, 144),
    13: ("Q5_K", 256, 176),
    14: ("Q6_K", 256, 210),
    15: ("Q8_K", 256, 292),
    16: ("IQ2_XXS", 256, 66),
    17: ("IQ2_XS", 256, 74),
    18: ("IQ3_XXS", 256, 98),
    19: ("IQ1_S", 256, 50),
    20: ("IQ4_NL", 32, 18),
    21: ("IQ3_S", 256, 110),
    22: ("IQ2_S", 256, 82),
    23: ("IQ4_XS", 256, 136),
    24: ("I8", 1, 1),
    25: ("I16", 1, 2),
    26: ("I32", 1, 4),
    27: ("I64", 1, 8),
    28: ("F64", 1, 8),
    29: ("IQ1_M", 256, 56),
    30: ("BF16", 1, 2),
    34: ("TQ1_0", 256, 54),
    35: ("TQ2_0", 256, 66),
    39: ("MXFP4", 32, 17),
}
# the types MLX's reader turns into weights (measured: the others fail inside it, or vanish)
READABLE = ("F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q2_K", "Q4_K", "Q6_K")
FLOATS = ("F32", "F16", "BF16")


@dataclass(frozen=True)
class TensorInfo:
    name: str
    dims: tuple[int, ...]  # GGUF order: the first is the innermost (a matrix's columns)
    type_name: str
    offset: int  # from the start of the file
    nbytes: int


@dataclass
class Header:
    version: int
    metadata: dict[str, Any]
    types: dict[str, tuple[int, int | None]]  # key -> (value type, element type of an array)
    tensors: dict[str, TensorInfo]
    file_size: int


class _Cursor:
    """Reads fields in order, each checked against the bytes that are left."""

    def __init__(self, data: Any, source: str) -> None:
        self.data, self.source, self.pos, self.size = data, source, 0, len(data)

    def fail(self, what: str) -> NoReturn:
        raise MlxtuneError(f"{self.source}: not a readable GGUF file: {what}")

    def left(self) -> int:
        return self.size - self.pos

    def need(self, count: int, what: str) -> None:
        if count > self.left():
            self.fail(
                f"{what} at byte {self.pos} needs {count} bytes, but only {self.left()} are "
                "left in the file (cut short?)"
            )

    def unpack(self, code: str, what: str) -> Any:
        size = struct.calcsize("<" + code)
        self.need(size, what)
        (value,) = struct.unpack_from("<" + code, self.data, self.pos)
        self.pos += size
        return value

    def string(self, what: str, limit: int | None = None) -> str:
        start = self.pos
        length = self.unpack("Q", f"the length of {what}")
        if limit is not None and length > limit:
            self.fail(f"{what} at byte {start} is {length} bytes long (at most {limit})")
        self.need(length, what)
        raw = self.data[self.pos : self.pos + length]
        self.pos += length
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            self.fail(f"{what} at byte {start} is not UTF-8 text")

    def array(self, what: str) -> tuple[list[Any], int]:
        start = self.pos
        kind = self.unpack("I", f"the element type of {what}")
        count = self.unpack("Q", f"the length of {what}")
        if kind not in SCALARS and kind != STRING:
            nested = "an array of arrays" if kind == ARRAY else f"unknown element type {kind}"
            self.fail(f"{what} at byte {start} is {nested}")
        each = struct.calcsize("<" + SCALARS[kind]) if kind in SCALARS else 8
        if count > MAX_ARRAY:
            self.fail(f"{what} at byte {start} claims {count} elements (at most {MAX_ARRAY})")
        if count * each > self.left():
            self.fail(
                f"{what} at byte {start} claims {count} elements, more than the "
                f"{self.left()} bytes left in the file hold"
            )
        if kind in SCALARS:
            values = list(struct.unpack_from(f"<{count}{SCALARS[kind]}", self.data, self.pos))
            self.pos += count * each
            return values, kind
        return [self.string(f"{what}[{i}]") for i in range(count)], kind

    def value(self, kind: int, what: str) -> tuple[Any, int | None]:
        if kind in SCALARS:
            return self.unpack(SCALARS[kind], what), None
        if kind == STRING:
            return self.string(what), None
        if kind == ARRAY:
            return self.array(what)
        self.fail(f"{what} has value type {kind}, which GGUF does not define")


def read_header(path: Path) -> Header:
    """The header of the GGUF file at `path`, every field bounded (MlxtuneError if not)."""
    try:
        with open(path, "rb") as fh:
            if fh.read(len(MAGIC)) != MAGIC:
                raise MlxtuneError(f"{path} is not a GGUF file (it does not start with 'GGUF')")
            with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as data:
                return parse_header(data, str(path))
    except OSError as exc:
        raise MlxtuneError(f"{path}: cannot read it ({exc.strerror or exc})") from None


def parse_header(data: Any, source: str) -> Header:
    """Parse a GGUF header from `data` (bytes or an mmap of the whole file)."""
    cursor = _Cursor(data, source)
    if data[:4] != MAGIC:
        raise MlxtuneError(f"{source} is not a GGUF file (it does not start with 'GGUF')")
    cursor.pos = 4
    version = cursor.unpack("I", "the version")
    if version not in VERSIONS:
        if version.to_bytes(4, "little")[::-1] == (3).to_bytes(4, "little"):
            cursor.fail("a big-endian file; only little-endian GGUF files are read")
        cursor.fail(f"GGUF version {version} (versions 2 and 3 are read)")
    tensor_count = cursor.unpack("Q", "the tensor count")
    kv_count = cursor.unpack("Q", "the metadata count")
    if tensor_count == 0:
        cursor.fail("it holds no tensors (metadata only: not a model)")
    if tensor_count * MIN_TENSOR_BYTES > cursor.left():
        cursor.fail(
            f"a tensor count of {tensor_count} (byte 8), more than the file's "
            f"{cursor.size} bytes can describe"
        )
    if tensor_count > MAX_TENSORS:
        cursor.fail(f"a tensor count of {tensor_count} (byte 8); at most {MAX_TENSORS} are read")
    if kv_count > MAX_KV or kv_count * MIN_KV_BYTES > cursor.left():
        cursor.fail(f"a metadata count of {kv_count} (byte 16), more than the file can hold")
    metadata: dict[str, Any] = {}
    types: dict[str, tuple[int, int | None]] = {}
    for index in range(kv_count):
        key = cursor.string(f"metadata key {index + 1}", MAX_KEY)
        if key in metadata:
            cursor.fail(f"metadata key {key!r} appears twice")
        kind = cursor.unpack("I", f"the value type of {key!r}")
        metadata[key], element = cursor.value(kind, f"metadata {key!r}")
        types[key] = (kind, element)
    alignment = metadata.get("general.alignment", DEFAULT_ALIGNMENT)
    if "general.alignment" in types and (
        types["general.alignment"][0] != UINT32 or alignment & (alignment - 1) or alignment == 0
    ):
        cursor.fail(f"general.alignment {alignment!r} is not a power of two (a u32)")
    raw = [_tensor_info(cursor, index) for index in range(tensor_count)]
    data_start = -(-cursor.pos // alignment) * alignment
    tensors: dict[str, TensorInfo] = {}
    for name, dims, type_id, offset in raw:
        if name in tensors:
            cursor.fail(f"tensor {name!r} appears twice")
        tensors[name] = _placed(cursor, name, dims, type_id, offset, data_start, alignment)
    return Header(version, metadata, types, tensors, cursor.size)


def _tensor_info(cursor: _Cursor, index: int) -> tuple[str, tuple[int, ...], int, int]:
    name = cursor.string(f"the name of tensor {index + 1}", MAX_NAME)
    start = cursor.pos
    n_dims = cursor.unpack("I", f"the dimension count of tensor {name!r}")
    if not 1 <= n_dims <= MAX_DIMS:
        cursor.fail(f"tensor {name!r} has {n_dims} dimensions at byte {start} (1 to {MAX_DIMS})")
    dims = tuple(cursor.unpack("Q", f"a dimension of tensor {name!r}") for _ in range(n_dims))
    type_id = cursor.unpack("I", f"the type of tensor {name!r}")
    offset = cursor.unpack("Q", f"the data offset of tensor {name!r}")
    return name, dims, type_id, offset


def _placed(
    cursor: _Cursor,
    name: str,
    dims: tuple[int, ...],
    type_id: int,
    offset: int,
    data_start: int,
    alignment: int,
) -> TensorInfo:
    """The tensor's type readable, its shape whole blocks, its bytes inside the file."""
    if type_id not in GGML_TYPES:
        cursor.fail(f"tensor {name!r} has type {type_id}, which is no ggml tensor type")
    type_name, block, block_bytes = GGML_TYPES[type_id]
    if type_name not in READABLE:
        cursor.fail(
            f"tensor {name!r} is stored as {type_name}, which MLX's GGUF reader cannot read "
            f"(readable: {', '.join(READABLE)}); use another quantization of the model"
        )
    if 0 in dims:
        cursor.fail(f"tensor {name!r} has a zero dimension {list(dims)}")
    if dims[0] % block:
        cursor.fail(f"tensor {name!r} ({type_name}) has rows of {dims[0]}, not whole blocks")
    count = 1
    for dim in dims:
        count *= dim
        if count > cursor.size * block:  # no tensor can be larger than the file
            cursor.fail(f"tensor {name!r} of shape {list(dims)} is larger than the file")
    nbytes = count // block * block_bytes
    if offset % alignment:
        cursor.fail(f"tensor {name!r} has offset {offset}, not a multiple of {alignment}")
    start = data_start + offset
    if start + nbytes > cursor.size:
        cursor.fail(
            f"tensor {name!r} ({nbytes} bytes at byte {start}) extends past the end of the "
            f"file ({cursor.size} bytes): cut short?"
        )
    return TensorInfo(name, dims, type_name, start, nbytes)
