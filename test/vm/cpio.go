package vm

import (
	"fmt"
	"io"
	"strings"
)

// cpioFile is one regular file of a newc archive.
type cpioFile struct {
	Name string // path inside the archive, without a leading slash
	Mode uint32 // permission bits
	Data []byte
}

// writeCPIO writes files as an uncompressed newc ("070701") archive, the format
// the kernel unpacks into the initramfs. The kernel accepts archives appended
// to one another, so this adds the test binary to a prebuilt initrd without
// rebuilding it; uncompressed, because gunzip under TCG costs seconds.
func writeCPIO(w io.Writer, files []cpioFile) error {
	ino := uint32(1000)
	entry := func(name string, mode uint32, data []byte) error {
		ino++
		hdr := fmt.Sprintf("070701%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x",
			ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(name)+1, 0)
		if _, err := io.WriteString(w, hdr+name+"\x00"+pad(len(hdr)+len(name)+1)); err != nil {
			return err
		}
		if _, err := w.Write(data); err != nil {
			return err
		}
		_, err := io.WriteString(w, pad(len(data)))
		return err
	}
	for _, f := range files {
		name := strings.TrimPrefix(f.Name, "/")
		if err := entry(name, 0o100000|f.Mode, f.Data); err != nil {
			return err
		}
	}
	return entry("TRAILER!!!", 0, nil)
}

// pad returns the NULs that align n bytes to 4.
func pad(n int) string { return strings.Repeat("\x00", (4-n%4)%4) }
