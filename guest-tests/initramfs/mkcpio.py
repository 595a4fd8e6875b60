#!/usr/bin/env python3
"""Writes an uncompressed newc cpio archive (the kernel's initramfs format,
Documentation/driver-api/early-userspace/buffer-format.rst) from a list read
on stdin, one entry per line (same syntax as the kernel's gen_init_cpio):

  dir   <name> <mode>
  file  <name> <source> <mode>
  slink <name> <target> <mode>
  nod   <name> <mode> <c|b> <major> <minor>

Owner is always 0:0 and mtime 0, so the output is reproducible and no root
privileges are needed for device nodes.
"""
import stat
import sys


def pad4(n):
    return (4 - n % 4) % 4


class Writer:
    def __init__(self, out):
        self.out = out
        self.ino = 1
        self.seen = set()

    def entry(self, name, mode, data=b"", rmajor=0, rminor=0, nlink=1):
        name = name.lstrip("/")
        if name in self.seen:
            raise SystemExit(f"mkcpio: duplicate entry {name}")
        self.seen.add(name)
        encoded = name.encode() + b"\0"
        fields = [self.ino, mode, 0, 0, nlink, 0, len(data), 0, 0,
                  rmajor, rminor, len(encoded), 0]
        header = b"070701" + b"".join(b"%08X" % f for f in fields)
        self.ino += 1
        self.out.write(header + encoded + b"\0" * pad4(len(header) + len(encoded)))
        self.out.write(data + b"\0" * pad4(len(data)))

    def trailer(self):
        self.ino = 0
        self.entry("TRAILER!!!", 0)


def main():
    if len(sys.argv) != 2:
        raise SystemExit("usage: mkcpio.py OUT.cpio < list")
    with open(sys.argv[1], "wb") as out:
        w = Writer(out)
        for lineno, line in enumerate(sys.stdin, 1):
            parts = line.split()
            if not parts or parts[0].startswith("#"):
                continue
            kind, name = parts[0], parts[1]
            try:
                if kind == "dir":
                    w.entry(name, stat.S_IFDIR | int(parts[2], 8), nlink=2)
                elif kind == "file":
                    with open(parts[2], "rb") as f:
                        w.entry(name, stat.S_IFREG | int(parts[3], 8), f.read())
                elif kind == "slink":
                    w.entry(name, stat.S_IFLNK | int(parts[3], 8), parts[2].encode())
                elif kind == "nod":
                    kind_bits = {"c": stat.S_IFCHR, "b": stat.S_IFBLK}[parts[3]]
                    w.entry(name, kind_bits | int(parts[2], 8),
                            rmajor=int(parts[4]), rminor=int(parts[5]))
                else:
                    raise ValueError(f"unknown entry type {kind}")
            except (IndexError, KeyError, ValueError, OSError) as e:
                raise SystemExit(f"mkcpio: line {lineno}: {line.strip()}: {e}")
        w.trailer()


if __name__ == "__main__":
    main()
