"""Sparse disk images read back exactly what a dense bytearray would."""

from hypothesis import given, settings, strategies as st

from simxen.domains.disk import BLOCK_SIZE, DiskImage

SIZE = 8 * BLOCK_SIZE


@settings(max_examples=80, deadline=None)
@given(st.lists(st.tuples(st.integers(0, SIZE - 1), st.binary(min_size=0, max_size=1300)),
                max_size=12),
       st.integers(0, SIZE - 1), st.integers(0, SIZE))
def test_sparse_reads_equal_dense_reads(writes, at, length):
    image, dense = DiskImage("/var/x.img", SIZE), bytearray(SIZE)
    for offset, data in writes:
        data = data[:SIZE - offset]
        image.write(offset, data)
        dense[offset:offset + len(data)] = data
    length = min(length, SIZE - at)
    assert image.read(at, length) == bytes(dense[at:at + length])
    assert image.snapshot() == bytes(dense)
    copy = DiskImage("/var/y.img", SIZE)
    copy.restore(image.snapshot())
    assert copy.snapshot() == bytes(dense) and copy.stored_bytes() <= image.stored_bytes()


def test_only_written_blocks_hold_memory():
    image = DiskImage("/var/vtpm.img")              # 2 MiB
    assert image.read(4096, 16) == bytes(16) and image.stored_bytes() == 0
    image.write(BLOCK_SIZE - 2, b"abcd")           # straddles two blocks
    assert image.stored_bytes() == 2 * BLOCK_SIZE
    assert image.read(BLOCK_SIZE - 4, 8) == b"\0\0abcd\0\0"
