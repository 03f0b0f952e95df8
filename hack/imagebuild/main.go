// Command imagebuild builds csi-hub's container images as OCI/Docker image
// tarballs without a container engine (go-containerregistry), for the local
// cluster (hack/cluster-up.sh imports them with `ctr images import`):
//
//	csi-hub         the static csi-hub binary
//	csi-hub-plugin  the static driver binary plus mkfs.ext4, mkfs.xfs, blkid,
//	                losetup, resize2fs, xfs_growfs, nvme-cli ... copied with
//	                their shared libraries from this machine
//	pause           a static Go pod sandbox process
//	busybox         Debian's busybox-static, for example and test workloads
//
// Run from the repository root: go run ./hack/imagebuild -out _output/images
// People with Docker can use the Dockerfile instead.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// pluginTools are the host programs the node plugin runs (directly or through
// k8s.io/mount-utils): formatting, checking, growing, loop and NVMe devices.
var pluginTools = []string{
	"sh", "mount", "umount", "findmnt", "blkid", "losetup", "blockdev",
	"mke2fs", "mkfs.ext4", "mkfs.ext3", "e2fsck", "fsck", "fsck.ext4", "resize2fs", "dumpe2fs", "tune2fs",
	"mkfs.xfs", "fsck.xfs", "xfs_repair", "xfs_growfs", "xfs_io", "xfs_info",
	"nvme",
}

type builder struct {
	workDir string
	version string
}

type imageSpec struct {
	name  string
	build func(b *builder) (*rootfs, v1.Config, error)
}

var images = []imageSpec{
	{"csi-hub", func(b *builder) (*rootfs, v1.Config, error) {
		return b.goImage("csi-hub", "./cmd/csi-hub")
	}},
	{"csi-hub-plugin", (*builder).pluginImage},
	{"pause", func(b *builder) (*rootfs, v1.Config, error) {
		return b.goImage("pause", "./hack/imagebuild/pause")
	}},
	{"busybox", (*builder).busyboxImage},
}

func main() {
	out := flag.String("out", "_output/images", "directory for the image tarballs (<name>.tar)")
	registry := flag.String("registry", "csi-hub.local", "registry part of the image references")
	tag := flag.String("tag", "dev", "tag of the image references")
	only := flag.String("images", "", "comma-separated subset of csi-hub,csi-hub-plugin,pause,busybox (default: all)")
	version := flag.String("version", "dev", "version stamped into the Go binaries")
	prebuilt := flag.String("prebuilt", "", "comma-separated REF=BINARY: only build images of these static binaries, named REF")
	e2eAgnhost := flag.String("e2e-agnhost", "", "build only the Kubernetes e2e test images (busybox, agnhost, pause, nginx, jessie-dnsutils) under their upstream names, with this agnhost binary")
	flag.Parse()
	if *e2eAgnhost != "" {
		if err := runE2E(*out, *e2eAgnhost); err != nil {
			fmt.Fprintln(os.Stderr, "imagebuild:", err)
			os.Exit(1)
		}
		return
	}
	if *prebuilt != "" {
		if err := runPrebuilt(*out, *prebuilt); err != nil {
			fmt.Fprintln(os.Stderr, "imagebuild:", err)
			os.Exit(1)
		}
		return
	}
	if err := run(*out, *registry, *tag, *only, *version); err != nil {
		fmt.Fprintln(os.Stderr, "imagebuild:", err)
		os.Exit(1)
	}
}

func run(out, registry, tag, only, version string) error {
	wanted := map[string]bool{}
	for _, n := range strings.Split(only, ",") {
		if n = strings.TrimSpace(n); n != "" {
			wanted[n] = true
		}
	}
	for n := range wanted {
		if !knownImage(n) {
			return fmt.Errorf("-images: unknown image %q", n)
		}
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	work, err := os.MkdirTemp("", "imagebuild-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	b := &builder{workDir: work, version: version}
	for _, spec := range images {
		if len(wanted) > 0 && !wanted[spec.name] {
			continue
		}
		ref := fmt.Sprintf("%s/%s:%s", registry, spec.name, tag)
		file := filepath.Join(out, spec.name+".tar")
		if err := writeImage(b, spec, ref, file); err != nil {
			return fmt.Errorf("image %s: %w", spec.name, err)
		}
		fmt.Printf("%s\t%s\n", ref, file)
	}
	return nil
}

func knownImage(n string) bool {
	for _, s := range images {
		if s.name == n {
			return true
		}
	}
	return false
}

func writeImage(b *builder, spec imageSpec, ref, file string) error {
	fs, cfg, err := spec.build(b)
	if err != nil {
		return err
	}
	layer, err := fs.layer()
	if err != nil {
		return err
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		return err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = runtime.GOOS, runtime.GOARCH
	cf.Config = cfg
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		return err
	}
	tagRef, err := name.NewTag(ref)
	if err != nil {
		return err
	}
	// Write to a temporary name first, so a failed build never leaves a truncated tarball.
	tmp := file + ".tmp"
	if err := tarball.WriteToFile(tmp, tagRef, img); err != nil {
		os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, file)
}

// goBuild builds a static binary of the package pkg (relative to the repo root).
func (b *builder) goBuild(binName, pkg string) (string, error) {
	bin := filepath.Join(b.workDir, binName)
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w -X main.version="+b.version, "-o", bin, pkg)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("go build %s: %w", pkg, err)
	}
	return bin, nil
}

func (b *builder) goImage(binName, pkg string) (*rootfs, v1.Config, error) {
	bin, err := b.goBuild(binName, pkg)
	if err != nil {
		return nil, v1.Config{}, err
	}
	fs := newRootfs()
	fs.addFile("/"+binName, bin)
	return fs, v1.Config{Entrypoint: []string{"/" + binName}, Env: []string{"PATH=" + defaultPath}}, nil
}

func (b *builder) pluginImage() (*rootfs, v1.Config, error) {
	fs, cfg, err := b.goImage("csi-hub-plugin", "./cmd/csi-hub-plugin")
	if err != nil {
		return nil, cfg, err
	}
	for _, tool := range pluginTools {
		if _, err := fs.addHostBinary(tool); err != nil {
			return nil, cfg, err
		}
	}
	// mke2fs reads its defaults (ext4 features, inode size) from here.
	if _, err := os.Stat("/etc/mke2fs.conf"); err == nil {
		fs.addFile("/etc/mke2fs.conf", "/etc/mke2fs.conf")
	}
	return fs, cfg, nil
}

func (b *builder) busyboxImage() (*rootfs, v1.Config, error) {
	bin, err := lookPath("busybox")
	if err != nil {
		return nil, v1.Config{}, err
	}
	if out, err := exec.Command("ldd", bin).CombinedOutput(); err == nil {
		return nil, v1.Config{}, fmt.Errorf("%s is dynamically linked (%s); install busybox-static", bin, strings.TrimSpace(string(out)))
	}
	list, err := exec.Command(bin, "--list").Output()
	if err != nil {
		return nil, v1.Config{}, fmt.Errorf("busybox --list: %w", err)
	}
	fs := newRootfs()
	fs.addFile("/bin/busybox", bin)
	for _, applet := range strings.Fields(string(list)) {
		if applet != "busybox" {
			fs.addSymlink("/bin/"+applet, "busybox")
		}
	}
	// Workloads write scratch files here.
	fs.addDir("/tmp")
	return fs, v1.Config{Cmd: []string{"sh"}, Env: []string{"PATH=/bin"}}, nil
}
