"""Write the vendored flwr .proto files from the descriptors in an installed flwr wheel.

The flwr wheel ships only the generated `*_pb2.py` modules; each embeds its serialized
FileDescriptorProto, which holds the exact schema (names, field numbers, types, oneofs,
proto3 `optional`). This script prints that schema back as proto3 text, so the vendored files
match the pinned release field for field.

Usage (in a venv with the pinned flwr installed):
    python regenerate.py OUT_DIR
"""

import sys
from pathlib import Path

import flwr
from flwr.proto import fleet_pb2
from google.protobuf import descriptor_pb2

F = descriptor_pb2.FieldDescriptorProto
SCALARS = {
    F.TYPE_DOUBLE: "double",
    F.TYPE_FLOAT: "float",
    F.TYPE_INT64: "int64",
    F.TYPE_UINT64: "uint64",
    F.TYPE_INT32: "int32",
    F.TYPE_FIXED64: "fixed64",
    F.TYPE_FIXED32: "fixed32",
    F.TYPE_BOOL: "bool",
    F.TYPE_STRING: "string",
    F.TYPE_BYTES: "bytes",
    F.TYPE_UINT32: "uint32",
    F.TYPE_SFIXED32: "sfixed32",
    F.TYPE_SFIXED64: "sfixed64",
    F.TYPE_SINT32: "sint32",
    F.TYPE_SINT64: "sint64",
}

HEADER = """\
// Vendored from the Flower framework (https://github.com/flwrlabs/flower),
// flwr {version}, file {name}.
// Regenerated from the descriptors in the flwr=={version} wheel by regenerate.py;
// the schema (names, field numbers, types) is Flower's, comments are not preserved.
//
// Copyright Flower Labs GmbH. All Rights Reserved.
//
// Licensed under the Apache License, Version 2.0 (the "License");
// you may not use this file except in compliance with the License.
// You may obtain a copy of the License at
//
//     http://www.apache.org/licenses/LICENSE-2.0
//
// Unless required by applicable law or agreed to in writing, software
// distributed under the License is distributed on an "AS IS" BASIS,
// WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
// See the License for the specific language governing permissions and
// limitations under the License.
"""


def type_name(f):
    if f.type in SCALARS:
        return SCALARS[f.type]
    return f.type_name  # fully qualified, with a leading dot


def is_map(f, msg):
    if f.label != F.LABEL_REPEATED or f.type != F.TYPE_MESSAGE:
        return None
    for n in msg.nested_type:
        if n.options.map_entry and f.type_name.endswith("." + n.name):
            return n
    return None


def enum_text(e, ind):
    out = [f"{ind}enum {e.name} {{"]
    for v in e.value:
        out.append(f"{ind}  {v.name} = {v.number};")
    out.append(f"{ind}}}")
    return out


def message_text(m, ind):
    out = [f"{ind}message {m.name} {{"]
    for e in m.enum_type:
        out += enum_text(e, ind + "  ")
    for n in m.nested_type:
        if not n.options.map_entry:
            out += message_text(n, ind + "  ")
    real_oneofs = {}
    for f in m.field:
        if f.HasField("oneof_index") and not f.proto3_optional:
            real_oneofs.setdefault(f.oneof_index, []).append(f)
    done = set()
    for f in m.field:
        if f.HasField("oneof_index") and not f.proto3_optional:
            i = f.oneof_index
            if i in done:
                continue
            done.add(i)
            out.append(f"{ind}  oneof {m.oneof_decl[i].name} {{")
            for g in real_oneofs[i]:
                out.append(f"{ind}    {type_name(g)} {g.name} = {g.number};")
            out.append(f"{ind}  }}")
            continue
        entry = is_map(f, m)
        if entry is not None:
            k, v = entry.field
            out.append(f"{ind}  map<{type_name(k)}, {type_name(v)}> {f.name} = {f.number};")
            continue
        label = ""
        if f.label == F.LABEL_REPEATED:
            label = "repeated "
        elif f.proto3_optional:
            label = "optional "
        out.append(f"{ind}  {label}{type_name(f)} {f.name} = {f.number};")
    for r in m.reserved_range:
        out.append(f"{ind}  reserved {r.start} to {r.end - 1};")
    for r in m.reserved_name:
        out.append(f'{ind}  reserved "{r}";')
    out.append(f"{ind}}}")
    return out


def file_text(fd):
    p = descriptor_pb2.FileDescriptorProto.FromString(fd.serialized_pb)
    assert p.syntax == "proto3", p.name
    out = [HEADER.format(version=flwr.__version__, name=p.name), 'syntax = "proto3";', "", f"package {p.package};", ""]
    for d in p.dependency:
        out.append(f'import "{d}";')
    if p.dependency:
        out.append("")
    for s in p.service:
        out.append(f"service {s.name} {{")
        for m in s.method:
            cs = "stream " if m.client_streaming else ""
            ss = "stream " if m.server_streaming else ""
            out.append(f"  rpc {m.name}({cs}{m.input_type}) returns ({ss}{m.output_type}) {{}}")
        out.append("}")
        out.append("")
    for e in p.enum_type:
        out += enum_text(e, "")
        out.append("")
    for m in p.message_type:
        out += message_text(m, "")
        out.append("")
    return p.name, "\n".join(out).rstrip() + "\n"


def walk(fd, seen, order):
    if fd.name in seen:
        return
    seen.add(fd.name)
    for d in fd.dependencies:
        walk(d, seen, order)
    order.append(fd)


def main():
    out_dir = Path(sys.argv[1])
    order = []
    walk(fleet_pb2.DESCRIPTOR, set(), order)
    fds = descriptor_pb2.FileDescriptorSet()
    for fd in order:
        fds.file.append(descriptor_pb2.FileDescriptorProto.FromString(fd.serialized_pb))
    (out_dir / "flwr-descriptors.binpb").write_bytes(fds.SerializeToString(deterministic=True))
    for fd in order:
        name, text = file_text(fd)
        path = out_dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(path)


if __name__ == "__main__":
    main()
