package pool

import (
	"errors"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// copyFile copies src into the empty dst: a reflink where the filesystem
// supports it (instant, shares blocks until written), else only src's data
// ranges so holes stay holes and a sparse volume's snapshot stays sparse.
func copyFile(dst, src *os.File) error {
	err := unix.IoctlFileClone(int(dst.Fd()), int(src.Fd()))
	if err == nil {
		return nil
	}
	if !errors.Is(err, unix.EOPNOTSUPP) && !errors.Is(err, unix.ENOTTY) &&
		!errors.Is(err, unix.EXDEV) && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOSYS) {
		return err
	}
	fi, err := src.Stat()
	if err != nil {
		return err
	}
	size := fi.Size()
	if err := dst.Truncate(size); err != nil {
		return err
	}
	srcFd := int(src.Fd())
	for off := int64(0); off < size; {
		start, err := unix.Seek(srcFd, off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			return nil // only a hole remains
		}
		if err != nil {
			// No SEEK_DATA on this filesystem: copy everything.
			return copyRange(dst, src, 0, size)
		}
		end, err := unix.Seek(srcFd, start, unix.SEEK_HOLE)
		if err != nil {
			return copyRange(dst, src, 0, size)
		}
		if err := copyRange(dst, src, start, end-start); err != nil {
			return err
		}
		off = end
	}
	return nil
}

// copyRange copies length bytes at off from src to the same offset in dst,
// in the kernel where it can.
func copyRange(dst, src *os.File, off, length int64) error {
	for length > 0 {
		inOff, outOff := off, off
		n, err := unix.CopyFileRange(int(src.Fd()), &inOff, int(dst.Fd()), &outOff, int(min(length, 1<<30)), 0)
		if err != nil {
			if errors.Is(err, unix.EXDEV) || errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EINVAL) {
				return copyRangeUser(dst, src, off, length)
			}
			return err
		}
		if n == 0 {
			return io.ErrUnexpectedEOF
		}
		off += int64(n)
		length -= int64(n)
	}
	return nil
}

func copyRangeUser(dst, src *os.File, off, length int64) error {
	_, err := io.Copy(io.NewOffsetWriter(dst, off), io.NewSectionReader(src, off, length))
	return err
}
