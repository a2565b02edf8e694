"""Just enough of the ONNX protobuf wire format to edit what torch.onnx.export writes, without the `onnx`
package (not installable here): point float initializers at the bytes of a safetensors file (ONNX
external data) and add model metadata.

Protobuf wire format: each field is a varint key (field_number << 3 | wire_type) then a value: wire
type 0 a varint, 1 eight bytes, 2 a varint length and that many bytes, 5 four bytes. Fields we do not
touch are copied byte for byte, so nothing torch wrote is lost.

ONNX field numbers used (onnx/onnx.proto3):
  ModelProto:  graph = 7, metadata_props = 14 (StringStringEntryProto)
  GraphProto:  initializer = 5 (TensorProto)
  TensorProto: dims = 1, data_type = 2, float_data = 4, name = 8, raw_data = 9, external_data = 13
               (StringStringEntryProto), data_location = 14 (1 = EXTERNAL)
  StringStringEntryProto: key = 1, value = 2
"""
from __future__ import annotations

import json
import struct
from typing import Callable, Dict, List, Optional, Tuple

Field = Tuple[int, int, bytes]  # (field number, wire type, the encoded value: varint bytes or payload)

FLOAT = 1  # TensorProto.DataType.FLOAT
EXTERNAL = 1  # TensorProto.DataLocation.EXTERNAL


def _read_varint(buf: bytes, i: int) -> Tuple[int, int]:
    shift = 0
    out = 0
    while True:
        b = buf[i]
        i += 1
        out |= (b & 0x7F) << shift
        if b < 0x80:
            return out, i
        shift += 7


def _varint(n: int) -> bytes:
    if n < 0:
        n += 1 << 64  # negative int64: ten-byte two's complement, as protobuf writes it
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def parse(buf: bytes) -> List[Field]:
    """The top-level fields of one message, in order. Length-delimited values are raw payloads."""
    fields: List[Field] = []
    i = 0
    while i < len(buf):
        key, i = _read_varint(buf, i)
        num, wt = key >> 3, key & 7
        if wt == 0:
            start = i
            _, i = _read_varint(buf, i)
            fields.append((num, wt, buf[start:i]))
        elif wt == 1:
            fields.append((num, wt, buf[i:i + 8]))
            i += 8
        elif wt == 2:
            n, i = _read_varint(buf, i)
            fields.append((num, wt, buf[i:i + n]))
            i += n
        elif wt == 5:
            fields.append((num, wt, buf[i:i + 4]))
            i += 4
        else:
            raise ValueError(f'unsupported protobuf wire type {wt} (field {num})')
    return fields


def serialize(fields: List[Field]) -> bytes:
    out = bytearray()
    for num, wt, val in fields:
        out += _varint(num << 3 | wt)
        if wt == 2:
            out += _varint(len(val))
        out += val
    return bytes(out)


def varint_value(val: bytes) -> int:
    return _read_varint(val, 0)[0]


def _entry(key: str, value: str) -> bytes:
    return serialize([(1, 2, key.encode()), (2, 2, value.encode())])


def _dims(fields: List[Field]) -> List[int]:
    dims: List[int] = []
    for num, wt, val in fields:
        if num != 1:
            continue
        if wt == 0:
            dims.append(varint_value(val))
        else:  # packed
            i = 0
            while i < len(val):
                d, i = _read_varint(val, i)
                dims.append(d)
    return dims


def safetensors_layout(path: str) -> Tuple[Dict[str, dict], int, bytes]:
    """(header, offset of the data section in the file, the whole file's bytes)."""
    with open(path, 'rb') as f:
        data = f.read()
    (n,) = struct.unpack('<Q', data[:8])
    header = json.loads(data[8:8 + n])
    header.pop('__metadata__', None)
    return header, 8 + n, data


def externalize(model: bytes, safetensors_path: str, location: str,
                name_map: Callable[[str], Optional[str]] = lambda n: n) -> Tuple[bytes, List[str]]:
    """Rewrites every FLOAT initializer whose (mapped) name is an F32 tensor of the safetensors file with
    the same shape and the same bytes into an external-data reference to that tensor's bytes in the file
    (`location` is the file name ONNX runtimes resolve, e.g. 'model.safetensors').

    The bytes are compared before the rewrite: the ONNX graph then reads exactly the weights the engine
    reads, by construction. Returns the new model bytes and the names rewritten.
    """
    header, base, file_bytes = safetensors_layout(safetensors_path)
    top = parse(model)
    done: List[str] = []
    new_top: List[Field] = []
    for num, wt, val in top:
        if num != 7:
            new_top.append((num, wt, val))
            continue
        graph = parse(val)
        new_graph: List[Field] = []
        for gnum, gwt, gval in graph:
            if gnum != 5:
                new_graph.append((gnum, gwt, gval))
                continue
            t = parse(gval)
            name = next((v.decode() for n, _, v in t if n == 8), '')
            dtype = next((varint_value(v) for n, _, v in t if n == 2), 0)
            raw = next((v for n, _, v in t if n == 9), None)
            st_name = name_map(name)
            info = header.get(st_name) if st_name else None
            if info is None or dtype != FLOAT or raw is None or info['dtype'] != 'F32' or info['shape'] != _dims(t):
                new_graph.append((gnum, gwt, gval))
                continue
            b, e = info['data_offsets']
            if file_bytes[base + b:base + e] != raw:
                raise RuntimeError(f'initializer {name}: bytes differ from {st_name} in {safetensors_path}')
            kept = [f for f in t if f[0] not in (4, 9, 13, 14)]
            kept += [(13, 2, _entry('location', location)), (13, 2, _entry('offset', str(base + b))),
                     (13, 2, _entry('length', str(e - b))), (14, 0, _varint(EXTERNAL))]
            new_graph.append((gnum, gwt, serialize(kept)))
            done.append(name)
        new_top.append((num, wt, serialize(new_graph)))
    return serialize(new_top), done


def add_metadata(model: bytes, props: Dict[str, str]) -> bytes:
    """Appends ModelProto.metadata_props entries (ONNX runtimes show them as the model's metadata)."""
    fields = parse(model) + [(14, 2, _entry(k, v)) for k, v in props.items()]
    return serialize(fields)


def initializer_summary(model: bytes) -> Dict[str, Tuple[List[int], bool]]:
    """name -> (dims, external?) of every initializer: for checks and reports."""
    out: Dict[str, Tuple[List[int], bool]] = {}
    for num, _, val in parse(model):
        if num != 7:
            continue
        for gnum, _, gval in parse(val):
            if gnum != 5:
                continue
            t = parse(gval)
            name = next((v.decode() for n, _, v in t if n == 8), '')
            ext = any(n == 14 and varint_value(v) == EXTERNAL for n, _, v in t)
            out[name] = (_dims(t), ext)
    return out


def op_types(model: bytes) -> Dict[str, int]:
    """op_type -> count over the main graph's nodes (GraphProto.node = 1, NodeProto.op_type = 4)."""
    counts: Dict[str, int] = {}
    for num, _, val in parse(model):
        if num != 7:
            continue
        for gnum, _, gval in parse(val):
            if gnum != 1:
                continue
            op = next((v.decode() for n, _, v in parse(gval) if n == 4), '?')
            counts[op] = counts.get(op, 0) + 1
    return counts
