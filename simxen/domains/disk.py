"""Disk images and the block device a stub domain sees.

A stub domain's ``disk=["file:/var/vtpm.img,hda,w"]`` names an image file in
dom0's filesystem. The file outlives the domain: destroy the vTPM, create it
again, and it finds its saved state there; copy an old image back and it
finds an old state (the rollback the manager must catch). So images live in
the toolstack (:attr:`simxen.domains.toolstack.Toolstack.images`), keyed by
path, and a domain gets a :class:`BlockDevice` on one.

The block path itself (blkfront -> blkback in dom0 -> the file) is not
simulated byte by byte: a request costs its domain one ``disk.request``
(the ring trip and the backing store's latency) plus ``disk.write_per_byte``
per byte written (``disk.read_per_byte`` when read), and a flush costs
``disk.flush``; each is one ``disk.*`` trace record naming the image, so the
report can count them. The bytes themselves are real: what a domain writes
is what the next reader gets.
"""

from __future__ import annotations

from simxen.xen import errno
from simxen.xen.errors import XenError

__all__ = ["DiskImage", "BlockDevice", "DEFAULT_IMAGE_SIZE", "SECTOR_SIZE", "BLOCK_SIZE"]

#: Size of an image the toolstack creates on first use: 2 MiB, the size the
#: Xen's vTPM documents suggest for vtpm and vtpmmgr images (docs/man/xen-vtpm.7.pod).
DEFAULT_IMAGE_SIZE = 2 * 1024 * 1024
#: a disk sector: what a device writes atomically (a crash tears a write between sectors)
SECTOR_SIZE = 512
#: what an image stores at a time: a 4 KiB block (a file system's page), so a large
#: write is a few slice copies
BLOCK_SIZE = 4096


class DiskImage:
    """An image file: ``path``, ``size`` and its bytes, stored sparsely.

    A fresh image reads as zeros, like a new sparse file; only the 4 KiB
    blocks that were ever written hold memory (a vTPM's state fills a few
    of its image's 512 blocks), so a host with thousands of images holds
    kilobytes per image rather than 2 MiB. :meth:`read` gives back exactly
    the bytes a dense image would.
    """

    __slots__ = ("path", "size", "_blocks")

    def __init__(self, path: str, size: int = DEFAULT_IMAGE_SIZE):
        self.path = path
        self.size = size
        self._blocks = {}          # block number -> bytearray(BLOCK_SIZE)

    def read(self, offset: int, length: int) -> bytes:
        """``length`` bytes from ``offset`` (zeros where nothing was written)."""
        if offset < 0 or length < 0 or offset + length > self.size:
            raise ValueError(f"read {offset}+{length} outside the {self.size}-byte image {self.path}")
        out = bytearray(length)
        blocks = self._blocks
        pos = offset
        end = offset + length
        while pos < end:
            n, within = divmod(pos, BLOCK_SIZE)
            step = min(BLOCK_SIZE - within, end - pos)
            block = blocks.get(n)
            if block is not None:
                out[pos - offset:pos - offset + step] = block[within:within + step]
            pos += step
        return bytes(out)

    def write(self, offset: int, data) -> None:
        """Put ``data`` at ``offset``; the blocks it touches start holding memory."""
        end = offset + len(data)
        if offset < 0 or end > self.size:
            raise ValueError(f"write {offset}+{len(data)} outside the {self.size}-byte image {self.path}")
        data = memoryview(data).cast("B")
        blocks = self._blocks
        pos = offset
        while pos < end:
            n, within = divmod(pos, BLOCK_SIZE)
            step = min(BLOCK_SIZE - within, end - pos)
            block = blocks.get(n)
            if block is None:
                block = blocks[n] = bytearray(BLOCK_SIZE)
            block[within:within + step] = data[pos - offset:pos - offset + step]
            pos += step

    def stored_bytes(self) -> int:
        """Bytes of memory the written blocks hold."""
        return len(self._blocks) * BLOCK_SIZE

    def snapshot(self) -> bytes:
        """A copy of the whole image (what ``cp vtpm.img backup.img`` keeps)."""
        return self.read(0, self.size)

    def restore(self, snapshot: bytes) -> None:
        """Put an earlier :meth:`snapshot` back (``cp backup.img vtpm.img``)."""
        if len(snapshot) != self.size:
            raise ValueError(f"snapshot of {len(snapshot)} bytes for a {self.size}-byte image")
        self._blocks = {}
        zero = bytes(BLOCK_SIZE)
        for n in range(0, self.size, BLOCK_SIZE):
            chunk = snapshot[n:n + BLOCK_SIZE]
            if chunk != zero[:len(chunk)]:
                self._blocks[n // BLOCK_SIZE] = bytearray(chunk.ljust(BLOCK_SIZE, b"\0"))


class BlockDevice:
    """Domain *dom*'s view of *image* as virtual device *vdev*.

    :meth:`read`, :meth:`write` and :meth:`flush` are plain calls that charge
    the domain's time cursor (like a hypercall; the domain's next block lets
    the time pass). A read-only device refuses writes with ``-EROFS``; an
    access outside the image is ``-EINVAL`` (blkback answers BLKIF_RSP_ERROR).
    """

    def __init__(self, hv, dom, image: DiskImage, vdev: str, *, writable: bool = True):
        self.hv = hv
        self.dom = dom
        self.image = image
        self.vdev = vdev
        self.writable = writable
        self.requests = 0
        self.bytes_written = 0
        self.bytes_read = 0

    @property
    def size(self) -> int:
        return self.image.size

    def _check(self, offset, length):
        if offset < 0 or length < 0 or offset + length > self.image.size:
            raise XenError(-errno.EINVAL, f"{self.vdev}: access {offset}+{length} outside the "
                                          f"{self.image.size}-byte image {self.image.path}")

    def read(self, offset: int, length: int, *, flow=None) -> bytes:
        self._check(offset, length)
        self.dom.charge("disk.request")
        self.dom.charge("disk.read_per_byte", length)
        self.requests += 1
        self.bytes_read += length
        self.hv.trace.emit("disk.read", self.dom.now, self.dom.domid, image=self.image.path,
                           offset=offset, length=length, flow=flow)
        return self.image.read(offset, length)

    def write(self, offset: int, data: bytes, *, flow=None) -> None:
        if not self.writable:
            raise XenError(-errno.EROFS, f"{self.vdev} ({self.image.path}) is read-only")
        self._check(offset, len(data))
        self.dom.charge("disk.request")
        self.dom.charge("disk.write_per_byte", len(data))
        self.requests += 1
        self.bytes_written += len(data)
        self.image.write(offset, data)
        self.hv.trace.emit("disk.write", self.dom.now, self.dom.domid, image=self.image.path,
                           offset=offset, length=len(data), flow=flow)

    def flush(self, *, flow=None) -> None:
        """BLKIF_OP_FLUSH_DISKCACHE: what the manager does after a sync."""
        self.dom.charge("disk.flush")
        self.requests += 1
        self.hv.trace.emit("disk.flush", self.dom.now, self.dom.domid, image=self.image.path, flow=flow)
