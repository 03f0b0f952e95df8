package pool

import (
	"bytes"
	"os"
	"syscall"
	"testing"
)

const mib = int64(1) << 20

func allocated(t *testing.T, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t).Blocks * 512
}

func newPool(t *testing.T) *Pool {
	t.Helper()
	p, err := New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestCreateThinAndThick(t *testing.T) {
	p := newPool(t)
	if err := p.Create("vol-thin", 64*mib, false); err != nil {
		t.Fatal(err)
	}
	if err := p.Create("vol-thick", 64*mib, true); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"vol-thin", "vol-thick"} {
		if size, err := p.Size(id); err != nil || size != 64*mib {
			t.Fatalf("%s: size %d %v", id, size, err)
		}
	}
	if a := allocated(t, p.Path("vol-thin")); a > mib {
		t.Fatalf("thin volume allocates %d bytes, want sparse", a)
	}
	if a := allocated(t, p.Path("vol-thick")); a < 64*mib {
		t.Fatalf("thick volume allocates only %d bytes", a)
	}
	ids, temps, err := p.Files()
	if err != nil || len(ids) != 2 || len(temps) != 0 {
		t.Fatalf("files %v temps %v %v", ids, temps, err)
	}
}

func TestCreateFromCopiesDataKeepsHolesAndGrows(t *testing.T) {
	p := newPool(t)
	if err := p.Create("vol-src", 32*mib, false); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(p.Path("vol-src"), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	pattern := bytes.Repeat([]byte("csi-hub!"), 512)
	for _, off := range []int64{0, 10 * mib, 32*mib - int64(len(pattern))} {
		if _, err := f.WriteAt(pattern, off); err != nil {
			t.Fatal(err)
		}
	}
	f.Close()
	if err := p.CreateFrom("snap-1", "vol-src", 48*mib, false); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(p.Path("snap-1"))
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(data)) != 48*mib {
		t.Fatalf("copy is %d bytes, want %d", len(data), 48*mib)
	}
	for _, off := range []int64{0, 10 * mib, 32*mib - int64(len(pattern))} {
		if !bytes.Equal(data[off:off+int64(len(pattern))], pattern) {
			t.Fatalf("data at %d not copied", off)
		}
	}
	if !bytes.Equal(data[5*mib:6*mib], make([]byte, mib)) || !bytes.Equal(data[40*mib:41*mib], make([]byte, mib)) {
		t.Fatal("holes or grown range are not zero")
	}
	if a := allocated(t, p.Path("snap-1")); a > 4*mib {
		t.Fatalf("copy allocates %d bytes: holes were filled", a)
	}
	if err := p.CreateFrom("vol-thick", "snap-1", 48*mib, true); err != nil {
		t.Fatal(err)
	}
	if a := allocated(t, p.Path("vol-thick")); a < 48*mib {
		t.Fatalf("thick restore allocates only %d", a)
	}
}

func TestResizeAndRemove(t *testing.T) {
	p := newPool(t)
	if err := p.Create("vol-a", 8*mib, false); err != nil {
		t.Fatal(err)
	}
	if err := p.Resize("vol-a", 16*mib, true); err != nil {
		t.Fatal(err)
	}
	if size, _ := p.Size("vol-a"); size != 16*mib {
		t.Fatalf("size %d after resize", size)
	}
	if a := allocated(t, p.Path("vol-a")); a < 16*mib {
		t.Fatalf("thick resize allocated %d", a)
	}
	for range 2 {
		if err := p.Remove("vol-a"); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := p.Size("vol-a"); !os.IsNotExist(err) {
		t.Fatalf("file still there: %v", err)
	}
}
