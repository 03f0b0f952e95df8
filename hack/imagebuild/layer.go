package main

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// rootfs is the content of one image layer: files copied from the host (or a
// build dir) and symlinks, keyed by their absolute path inside the image.
type rootfs struct {
	files    map[string]string // image path -> host source path
	symlinks map[string]string // image path -> link target
	dirs     map[string]bool   // extra empty directories
}

func newRootfs() *rootfs {
	return &rootfs{files: map[string]string{}, symlinks: map[string]string{}, dirs: map[string]bool{}}
}

func (r *rootfs) addFile(imagePath, hostPath string) { r.files[path.Clean(imagePath)] = hostPath }

func (r *rootfs) addDir(imagePath string) { r.dirs[path.Clean(imagePath)] = true }

func (r *rootfs) addSymlink(imagePath, target string) { r.symlinks[path.Clean(imagePath)] = target }

// layer renders the rootfs as an uncompressed tar layer. Entries are sorted and
// timestamps fixed so the same inputs give the same digest.
func (r *rootfs) layer() (v1.Layer, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	epoch := time.Unix(0, 0)
	dirs := map[string]bool{}
	var all []string
	for p := range r.files {
		all = append(all, p)
	}
	for p := range r.symlinks {
		all = append(all, p)
	}
	for p := range r.dirs {
		all = append(all, p+"/.")
	}
	sort.Strings(all)
	for _, p := range all {
		if strings.HasSuffix(p, "/.") {
			p = path.Dir(p) // a directory: write it and its parents, nothing else
		}
		for _, d := range append(parents(p), p) {
			if !r.dirs[d] && d == p {
				break
			}
			if dirs[d] {
				continue
			}
			dirs[d] = true
			hdr := &tar.Header{Typeflag: tar.TypeDir, Name: strings.TrimPrefix(d, "/") + "/", Mode: 0o755, ModTime: epoch}
			if d == "/tmp" {
				hdr.Mode = 0o1777
			}
			if err := tw.WriteHeader(hdr); err != nil {
				return nil, err
			}
		}
		if r.dirs[p] {
			continue
		}
		name := strings.TrimPrefix(p, "/")
		if target, ok := r.symlinks[p]; ok {
			if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeSymlink, Name: name, Linkname: target, Mode: 0o777, ModTime: epoch}); err != nil {
				return nil, err
			}
			continue
		}
		if err := writeFile(tw, name, r.files[p], epoch); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	data := buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil })
}

// writeFile copies a host file (following symlinks) as a regular file.
func writeFile(tw *tar.Writer, name, src string, mtime time.Time) error {
	f, err := os.Open(src)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file", src)
	}
	hdr := &tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: int64(st.Mode().Perm()), Size: st.Size(), ModTime: mtime}
	if err := tw.WriteHeader(hdr); err != nil {
		return err
	}
	_, err = io.Copy(tw, f)
	return err
}

// parents returns the directories above p, outermost first ("/a/b/c" -> /a, /a/b).
func parents(p string) []string {
	var out []string
	for d := path.Dir(p); d != "/" && d != "."; d = path.Dir(d) {
		out = append([]string{d}, out...)
	}
	return out
}
