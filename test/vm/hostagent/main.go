// Command hostagent is /test of the VMs of the multi-host NVMe/TCP test
// (test/vm TestHosts*): it configures the VM's network links and disk, then
// serves the test on the host through the VM's forwarded control NIC:
//
//	HTTP :7000   GET /ping, POST /exec (a command, its output and exit code),
//	             POST /plugin/start, /plugin/stop (the csi-hub-plugin process),
//	             POST /iobench (O_DIRECT sequential write/read and 4 KiB random
//	             reads on a device, for BenchmarkHostsThroughput),
//	             POST /poweroff (the agent exits; /init powers the VM off)
//	TCP  :7001   the plugin's CSI unix socket, byte for byte, so the test
//	             drives the real gRPC API as csi-hub and the kubelet do.
//
// It is built static by hack/vm/build-guests.sh (make test-deps) and added
// to the VM's initramfs with the plugin binary by test/vm.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Socket is where the plugin serves CSI inside the VM.
const Socket = "/run/csi/csi.sock"

type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, " ") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

func main() {
	var ifaces, routes, loAddrs listFlag
	var disk, ctlMAC string
	flag.Var(&ifaces, "if", "MAC=IP/prefix of a link NIC (repeatable)")
	flag.Var(&routes, "route", "DEST/prefix=GATEWAY (repeatable)")
	flag.Var(&loAddrs, "lo-addr", "IP/prefix to add to lo, e.g. the storage host's service address (repeatable)")
	flag.StringVar(&ctlMAC, "ctl-mac", "", "MAC of the control NIC (qemu user net, forwarded to the host)")
	flag.StringVar(&disk, "disk", "", "DEVICE=MOUNTPOINT: mount the disk there (mkfs.ext4 first if it has no filesystem)")
	flag.Parse()
	log.SetPrefix("hostagent: ")
	log.SetFlags(log.Ltime | log.Lmicroseconds)
	if err := setup(ctlMAC, ifaces, routes, loAddrs, disk); err != nil {
		log.Printf("set-up failed: %v", err)
		os.Exit(2)
	}
	a := &agent{quit: make(chan struct{})}
	go a.proxy()
	mux := http.NewServeMux()
	mux.HandleFunc("/ping", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("/exec", a.exec)
	mux.HandleFunc("/plugin/start", a.startPlugin)
	mux.HandleFunc("/plugin/stop", a.stopPlugin)
	mux.HandleFunc("/iobench", a.ioBench)
	mux.HandleFunc("/poweroff", func(w http.ResponseWriter, r *http.Request) {
		a.stop(10 * time.Second)
		fmt.Fprintln(w, "bye")
		go func() { time.Sleep(200 * time.Millisecond); close(a.quit) }()
	})
	srv := &http.Server{Addr: ":7000", Handler: mux}
	go func() {
		if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Printf("http: %v", err)
			os.Exit(3)
		}
	}()
	log.Printf("ready: control on :7000, CSI on :7001")
	<-a.quit
	exec.Command("sync").Run()
	log.Printf("powering off")
}

func run(name string, args ...string) error {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// ifaceByMAC waits for the NIC with that MAC (virtio-net probes asynchronously).
func ifaceByMAC(mac string) (string, error) {
	deadline := time.Now().Add(20 * time.Second)
	for {
		paths, _ := filepath.Glob("/sys/class/net/*/address")
		for _, p := range paths {
			if b, err := os.ReadFile(p); err == nil && strings.EqualFold(strings.TrimSpace(string(b)), mac) {
				return filepath.Base(filepath.Dir(p)), nil
			}
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("no NIC with MAC %s", mac)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func setup(ctlMAC string, ifaces, routes, loAddrs []string, disk string) error {
	type nic struct{ mac, addr string }
	nics := []nic{}
	if ctlMAC != "" {
		// qemu's user net: the guest is 10.0.2.15, which hostfwd targets.
		nics = append(nics, nic{ctlMAC, "10.0.2.15/24"})
	}
	for _, s := range ifaces {
		mac, addr, ok := strings.Cut(s, "=")
		if !ok {
			return fmt.Errorf("-if %q: want MAC=IP/prefix", s)
		}
		nics = append(nics, nic{mac, addr})
	}
	for _, n := range nics {
		name, err := ifaceByMAC(n.mac)
		if err != nil {
			return err
		}
		if err := run("ip", "addr", "add", n.addr, "dev", name); err != nil {
			return err
		}
		if err := run("ip", "link", "set", name, "up"); err != nil {
			return err
		}
		log.Printf("%s (%s) is %s", name, n.mac, n.addr)
	}
	for _, a := range loAddrs {
		if err := run("ip", "addr", "add", a, "dev", "lo"); err != nil {
			return err
		}
	}
	for _, r := range routes {
		dst, gw, ok := strings.Cut(r, "=")
		if !ok {
			return fmt.Errorf("-route %q: want DEST=GATEWAY", r)
		}
		if err := run("ip", "route", "add", dst, "via", gw); err != nil {
			return err
		}
	}
	if disk != "" {
		dev, dir, ok := strings.Cut(disk, "=")
		if !ok {
			return fmt.Errorf("-disk %q: want DEVICE=MOUNTPOINT", disk)
		}
		if out, _ := exec.Command("blkid", "-o", "value", "-s", "TYPE", dev).Output(); strings.TrimSpace(string(out)) == "" {
			if err := run("mkfs.ext4", "-q", "-F", "-E", "lazy_itable_init=1,lazy_journal_init=1", dev); err != nil {
				return err
			}
			log.Printf("made ext4 on %s", dev)
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		if err := run("mount", dev, dir); err != nil {
			return err
		}
		log.Printf("%s mounted on %s", dev, dir)
	}
	return os.MkdirAll(filepath.Dir(Socket), 0o755)
}

type agent struct {
	mu     sync.Mutex
	plugin *exec.Cmd
	exited chan struct{}
	quit   chan struct{}
}

// proxy copies TCP connections on :7001 to the plugin's unix socket.
func (a *agent) proxy() {
	l, err := net.Listen("tcp", ":7001")
	if err != nil {
		log.Printf("proxy: %v", err)
		os.Exit(3)
	}
	for {
		c, err := l.Accept()
		if err != nil {
			log.Printf("proxy accept: %v", err)
			continue
		}
		go func() {
			defer c.Close()
			u, err := net.Dial("unix", Socket)
			if err != nil {
				return
			}
			defer u.Close()
			done := make(chan struct{}, 2)
			go func() { io.Copy(u, c); done <- struct{}{} }()
			go func() { io.Copy(c, u); done <- struct{}{} }()
			<-done
		}()
	}
}

// ExecRequest and ExecResponse are /exec's JSON.
type ExecRequest struct {
	Argv      []string `json:"argv"`
	Stdin     []byte   `json:"stdin,omitempty"`
	TimeoutMS int      `json:"timeoutMS,omitempty"`
}

type ExecResponse struct {
	RC  int    `json:"rc"`
	Out []byte `json:"out"`
	Err string `json:"err,omitempty"`
}

func (a *agent) exec(w http.ResponseWriter, r *http.Request) {
	var req ExecRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil || len(req.Argv) == 0 {
		http.Error(w, fmt.Sprintf("bad request: %v", err), http.StatusBadRequest)
		return
	}
	timeout := time.Duration(req.TimeoutMS) * time.Millisecond
	if timeout == 0 {
		timeout = time.Minute
	}
	ctx, cancel := context.WithTimeout(r.Context(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, req.Argv[0], req.Argv[1:]...)
	cmd.Env = append(os.Environ(), "PATH=/usr/sbin:/usr/bin:/sbin:/bin")
	if req.Stdin != nil {
		cmd.Stdin = strings.NewReader(string(req.Stdin))
	}
	cmd.WaitDelay = 2 * time.Second
	out, err := cmd.CombinedOutput()
	resp := ExecResponse{RC: 0, Out: out}
	if err != nil {
		resp.RC = -1
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			resp.RC = ee.ExitCode()
		}
		resp.Err = err.Error()
		if ctx.Err() != nil {
			resp.Err = fmt.Sprintf("timed out after %v: %v", timeout, err)
		}
	}
	json.NewEncoder(w).Encode(resp)
}

func (a *agent) startPlugin(w http.ResponseWriter, r *http.Request) {
	var args []string
	if err := json.NewDecoder(r.Body).Decode(&args); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.plugin != nil {
		http.Error(w, "plugin already running", http.StatusConflict)
		return
	}
	os.Remove(Socket)
	cmd := exec.Command("/csi-hub-plugin", append([]string{"--endpoint=unix://" + Socket}, args...)...)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stdout // the serial console
	if err := cmd.Start(); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	exited := make(chan struct{})
	go func() {
		err := cmd.Wait()
		log.Printf("csi-hub-plugin exited: %v", err)
		close(exited)
	}()
	a.plugin, a.exited = cmd, exited
	log.Printf("csi-hub-plugin started: %s", strings.Join(cmd.Args, " "))
	// Answer once the socket is there, so the test's first call finds it.
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(50 * time.Millisecond) {
		if _, err := os.Stat(Socket); err == nil {
			break
		}
		select {
		case <-exited:
			http.Error(w, "csi-hub-plugin exited during start-up (see the console)", http.StatusInternalServerError)
			a.plugin = nil
			return
		default:
		}
		if time.Now().After(deadline) {
			break // the test's Probe says what is wrong
		}
	}
	fmt.Fprintln(w, "started")
}

// stop ends the plugin with SIGTERM, as the kubelet would, then SIGKILL.
func (a *agent) stop(grace time.Duration) string {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.plugin == nil {
		return "not running"
	}
	cmd, exited := a.plugin, a.exited
	a.plugin = nil
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
		return "stopped: " + fmt.Sprint(cmd.ProcessState)
	case <-time.After(grace):
		cmd.Process.Kill()
		<-exited
		return "killed after ignoring SIGTERM for " + grace.String()
	}
}

func (a *agent) stopPlugin(w http.ResponseWriter, r *http.Request) {
	fmt.Fprintln(w, a.stop(30*time.Second))
}
