package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// The images the Kubernetes storage e2e suites start (k8s.io/kubernetes
// test/utils/image/manifest.go at the e2e.test version), under their upstream
// names, so that `make conformance` runs without a registry. They are
// stand-ins built from this machine and Go source; each keeps the behaviour
// the suites rely on (noted per image).
const (
	e2eRegistry   = "registry.k8s.io/e2e-test-images"
	refBusyBox    = e2eRegistry + "/busybox:1.37.0-1"
	refAgnhost    = e2eRegistry + "/agnhost:2.56"
	refNginx      = e2eRegistry + "/nginx:1.14-4"
	refJessieDNS  = e2eRegistry + "/jessie-dnsutils:1.7"
	refPauseE2E   = "registry.k8s.io/pause:3.10.1"
	busyboxGroups = `root:x:0:
daemon:x:1:
bin:x:2:
sys:x:3:
adm:x:4:
tty:x:5:
disk:x:6:
lp:x:7:
mail:x:8:
kmem:x:9:
wheel:x:10:root
cdrom:x:11:
dialout:x:18:
floppy:x:19:
video:x:28:
audio:x:29:
tape:x:32:
www-data:x:33:
operator:x:37:
utmp:x:43:
users:x:100:
nogroup:x:65534:
`
	busyboxPasswd = `root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
bin:x:2:2:bin:/bin:/bin/false
sys:x:3:3:sys:/dev:/bin/false
sync:x:4:100:sync:/bin:/bin/sync
mail:x:8:8:mail:/var/spool/mail:/bin/false
www-data:x:33:33:www-data:/var/www:/bin/false
operator:x:37:37:Operator:/var:/bin/false
nobody:x:65534:65534:nobody:/home:/bin/false
`
)

// e2eImages returns the specs keyed by full reference. agnhost is the binary
// hack/ensure-e2e.sh built from k8s.io/kubernetes/test/images/agnhost.
func e2eImages(agnhost string) map[string]imageSpec {
	return map[string]imageSpec{
		// /etc/group must not name gid 1000: fsGroupChangePolicy specs compare
		// `ls -l` output with the numeric fsGroup.
		refBusyBox: {"e2e-busybox", func(b *builder) (*rootfs, v1.Config, error) {
			fs, err := b.e2eBusyboxRootfs(busyboxPasswd, busyboxGroups)
			return fs, v1.Config{Cmd: []string{"sh"}, Env: []string{"PATH=" + defaultPath}}, err
		}},
		// The suites only override its command with shell scripts (exec test).
		refNginx: {"e2e-nginx", func(b *builder) (*rootfs, v1.Config, error) {
			fs, err := b.e2eBusyboxRootfs(busyboxPasswd, busyboxGroups)
			return fs, v1.Config{Cmd: []string{"httpd", "-f", "-p", "80", "-h", "/tmp"}, Env: []string{"PATH=" + defaultPath}}, err
		}},
		// Debian-like: dash runs PATH commands (GNU dd, which knows
		// oflag=nocache) where busybox's shell would run its own applets.
		refJessieDNS: {"e2e-jessie-dnsutils", (*builder).jessieImage},
		// Alpine-based upstream: busybox userland, bash, the agnhost binary,
		// and the user/group the SupplementalGroups specs expect.
		refAgnhost: {"e2e-agnhost", func(b *builder) (*rootfs, v1.Config, error) {
			fs, err := b.e2eBusyboxRootfs(busyboxPasswd+"user-defined-in-image:x:1000:1000::/home/user-defined-in-image:/bin/sh\n",
				busyboxGroups+"user-defined-in-image:x:1000:\ngroup-defined-in-image:x:50000:user-defined-in-image\n")
			if err != nil {
				return nil, v1.Config{}, err
			}
			if _, err := fs.addHostBinary("bash"); err != nil {
				return nil, v1.Config{}, err
			}
			fs.addFile("/agnhost", agnhost)
			fs.addSymlink("/agnhost-2", "agnhost")
			fs.addDir("/uploads")
			return fs, v1.Config{Entrypoint: []string{"/agnhost"}, Cmd: []string{"pause"}, Env: []string{"PATH=" + defaultPath}}, nil
		}},
		refPauseE2E: {"e2e-pause", func(b *builder) (*rootfs, v1.Config, error) {
			fs, cfg, err := b.goImage("pause", "./hack/imagebuild/pause")
			return fs, cfg, err
		}},
	}
}

// e2eBusyboxRootfs: Debian's busybox-static with its applets in /bin and the
// given /etc/passwd and /etc/group (never the host's, which name local users).
func (b *builder) e2eBusyboxRootfs(passwd, group string) (*rootfs, error) {
	fs, _, err := b.busyboxImage()
	if err != nil {
		return nil, err
	}
	for name, content := range map[string]string{"passwd": passwd, "group": group} {
		p := filepath.Join(b.workDir, fmt.Sprintf("etc-%s-%d", name, len(content)))
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			return nil, err
		}
		fs.addFile("/etc/"+name, p)
	}
	for _, d := range []string{"/root", "/home", "/var", "/usr/bin", "/usr/sbin"} {
		fs.addDir(d)
	}
	return fs, nil
}

func (b *builder) jessieImage() (*rootfs, v1.Config, error) {
	fs, err := b.e2eBusyboxRootfs(busyboxPasswd, busyboxGroups)
	if err != nil {
		return nil, v1.Config{}, err
	}
	for _, tool := range []string{"dash", "dd"} {
		bin, err := fs.addHostBinary(tool)
		if err != nil {
			return nil, v1.Config{}, err
		}
		// Replace the busybox applet link of the same name in /bin.
		if filepath.Dir(bin) != "/bin" {
			fs.addFile("/bin/"+filepath.Base(bin), bin)
		}
		delete(fs.symlinks, "/bin/"+tool)
	}
	delete(fs.symlinks, "/bin/sh")
	fs.addSymlink("/bin/sh", "dash")
	if out, err := exec.Command("dd", "--version").Output(); err != nil || !strings.Contains(string(out), "coreutils") {
		return nil, v1.Config{}, fmt.Errorf("dd on this machine is not GNU coreutils dd (jessie-dnsutils needs oflag=nocache)")
	}
	return fs, v1.Config{Cmd: []string{"sh"}, Env: []string{"PATH=" + defaultPath}}, nil
}

// runE2E writes every e2e image into out and prints "REF<TAB>FILE" lines, like run.
func runE2E(out, agnhost string) error {
	if st, err := os.Stat(agnhost); err != nil || st.IsDir() {
		return fmt.Errorf("-e2e-agnhost %q: not a file (build it: hack/ensure-e2e.sh)", agnhost)
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	work, err := os.MkdirTemp("", "imagebuild-e2e-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	b := &builder{workDir: work, version: "e2e"}
	for ref, spec := range e2eImages(agnhost) {
		file := filepath.Join(out, spec.name+".tar")
		if err := writeImage(b, spec, ref, file); err != nil {
			return fmt.Errorf("image %s: %w", ref, err)
		}
		fmt.Printf("%s\t%s\n", ref, file)
	}
	return nil
}
