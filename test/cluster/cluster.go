package cluster

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/csi-hub/csi-hub/internal/testutil"
)

// Cluster is a running control plane. Create it with Start, StartT or Main.
type Cluster struct {
	// Dir is the cluster's private directory (certs, kubeconfig, logs unless
	// Options.LogDir is set); removed by Stop.
	Dir string
	// Kubeconfig is the path of an admin kubeconfig (system:masters) for
	// processes under test, e.g. a sidecar's --kubeconfig flag.
	Kubeconfig string
	// Host is the API server URL, https://127.0.0.1:<port>.
	Host string
	// Client is an admin clientset (QPS 100, burst 200).
	Client kubernetes.Interface
	// Certs are the PKI files; node e2e tests can sign more certs with the CA.
	Certs *Certs
	// BinDir holds the Kubernetes binaries this cluster runs (also kubelet and
	// kubectl after `make deps`).
	BinDir string
	// Startup is how long Start took, excluding building binaries.
	Startup time.Duration

	restConfig *rest.Config
	opts       Options
	etcdDir    string
	logDir     string
	snapDir    string // cache dir of snapshot-controller and CRDs, once known
	ports      ports

	mu        sync.Mutex
	processes []*process // in start order
	nodes     []string   // created by CreateNode; their Leases are renewed
	stopOnce  sync.Once
	cancel    context.CancelFunc // stops background work (node heartbeats)
	bgWG      sync.WaitGroup
}

type ports struct {
	etcdClient, etcdPeer, apiServer, controllerManager, scheduler, snapshotController int
}

// RESTConfig returns a copy of the admin REST config, safe to modify.
func (c *Cluster) RESTConfig() *rest.Config { return rest.CopyConfig(c.restConfig) }

// Start builds missing binaries and starts a control plane, returning once the
// API server is ready and kube-controller-manager is running its controllers.
// Errors that wrap ErrPrerequisite mean the machine lacks something.
//
// In unit mode (CSI_HUB_UNIT=1, set by make unit) it starts nothing and
// returns an error wrapping testutil.ErrUnitMode; callers skip before that.
func Start(opts Options) (*Cluster, error) {
	if err := testutil.RefuseInUnitMode("a test cluster (etcd, kube-apiserver, kube-controller-manager)"); err != nil {
		return nil, err
	}
	opts.setDefaults()

	etcdBin, err := etcdPath()
	if err != nil {
		return nil, err
	}
	names := []string{"kube-apiserver", "kube-controller-manager"}
	if opts.WithScheduler {
		names = append(names, "kube-scheduler")
	}
	binDir, err := k8sBinDir(opts.Logf, names...)
	if err != nil {
		return nil, err
	}
	var snapDir string
	if opts.WithSnapshotController {
		if snapDir, err = snapshotDir(opts.Logf); err != nil {
			return nil, err
		}
	}

	began := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), opts.StartTimeout)
	defer cancel()
	var c *Cluster
	for attempt := 1; ; attempt++ {
		if c, err = newCluster(opts, binDir, snapDir); err != nil {
			return nil, err
		}
		err = c.start(ctx, etcdBin)
		if err == nil {
			break
		}
		err = fmt.Errorf("starting test cluster in %s: %w", c.Dir, err)
		c.Stop()
		if !isAddrInUse(err) || attempt == 3 {
			return nil, err
		}
		opts.Logf("a port was taken by another process, retrying with new ports: %v", err)
	}
	c.Startup = time.Since(began)
	opts.Logf("cluster up in %.1fs at %s (dir %s, logs %s)", c.Startup.Seconds(), c.Host, c.Dir, c.logDir)
	return c, nil
}

// newCluster creates the directories, PKI and port plan.
func newCluster(opts Options, binDir, snapDir string) (*Cluster, error) {
	removeStaleDirs(opts.BaseDir)
	removeStaleDirs(shmDir)
	c := &Cluster{opts: opts, BinDir: binDir, snapDir: snapDir}
	var err error
	if c.Dir, err = makeOwnedDir(opts.BaseDir); err != nil {
		return nil, err
	}
	// etcd fsyncs on every write; on tmpfs that costs nothing and the data is
	// throwaway anyway. Falls back to the cluster dir where /dev/shm is absent.
	if c.etcdDir, err = makeOwnedDir(shmDir); err != nil {
		c.etcdDir = filepath.Join(c.Dir, "etcd")
	}
	c.logDir = opts.LogDir
	if c.logDir == "" {
		c.logDir = filepath.Join(c.Dir, "logs")
	}
	if err := os.MkdirAll(c.logDir, 0o755); err != nil {
		c.removeDirs()
		return nil, err
	}
	if c.Certs, err = generateCerts(filepath.Join(c.Dir, "pki")); err != nil {
		c.removeDirs()
		return nil, fmt.Errorf("generating certificates: %w", err)
	}
	p, err := freePorts(6)
	if err != nil {
		c.removeDirs()
		return nil, fmt.Errorf("reserving ports: %w", err)
	}
	c.ports = ports{p[0], p[1], p[2], p[3], p[4], p[5]}
	c.Host = "https://127.0.0.1:" + strconv.Itoa(c.ports.apiServer)
	c.Kubeconfig = filepath.Join(c.Dir, "admin.kubeconfig")
	return c, nil
}

const shmDir = "/dev/shm"

func makeOwnedDir(base string) (string, error) {
	dir, err := os.MkdirTemp(base, dirPrefix+"*")
	if err != nil {
		return "", err
	}
	return dir, os.WriteFile(filepath.Join(dir, ownerFile), []byte(strconv.Itoa(os.Getpid())), 0o644)
}

// start brings the components up in dependency order.
func (c *Cluster) start(ctx context.Context, etcdBin string) error {
	if err := c.startEtcd(ctx, etcdBin); err != nil {
		return err
	}
	if err := c.startAPIServer(ctx); err != nil {
		return err
	}
	if err := c.startControllerManager(ctx); err != nil {
		return err
	}
	bg, cancel := context.WithCancel(context.Background())
	c.cancel = cancel
	c.bgWG.Add(1)
	go func() {
		defer c.bgWG.Done()
		c.heartbeatNodes(bg)
	}()
	if c.opts.WithScheduler {
		if err := c.startScheduler(ctx); err != nil {
			return err
		}
	}
	if c.opts.WithSnapshotController {
		if err := c.startSnapshotController(ctx); err != nil {
			return err
		}
	}
	return nil
}

// Stop terminates every process (newest first), waits for them, and removes
// the cluster's directories. Safe to call more than once.
func (c *Cluster) Stop() {
	c.stopOnce.Do(func() {
		if c.cancel != nil {
			c.cancel()
			c.bgWG.Wait()
		}
		c.mu.Lock()
		procs := c.processes
		c.processes = nil
		c.mu.Unlock()
		for i := len(procs) - 1; i >= 0; i-- {
			procs[i].stop(15 * time.Second)
		}
		c.removeDirs()
	})
}

func (c *Cluster) removeDirs() {
	if c.etcdDir != "" {
		_ = os.RemoveAll(c.etcdDir)
	}
	if c.Dir != "" {
		_ = os.RemoveAll(c.Dir)
	}
}

// launch starts a component and registers it for Stop and LogTail.
func (c *Cluster) launch(name, bin string, args ...string) (*process, error) {
	p, err := startProcess(name, filepath.Join(c.logDir, name+".log"), bin, args...)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.processes = append(c.processes, p)
	c.mu.Unlock()
	return p, nil
}

// Components lists the names accepted by LogTail, in start order.
func (c *Cluster) Components() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	names := make([]string, 0, len(c.processes))
	for _, p := range c.processes {
		names = append(names, p.name)
	}
	return names
}

// LogTail returns the last n lines of a component's log ("etcd",
// "kube-apiserver", "kube-controller-manager", "kube-scheduler",
// "snapshot-controller"), for dumping when a test fails.
func (c *Cluster) LogTail(component string, n int) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, p := range c.processes {
		if p.name == component {
			return p.logTail(n)
		}
	}
	return fmt.Sprintf("(no component %q; have %v)", component, c.componentsLocked())
}

func (c *Cluster) componentsLocked() []string {
	names := make([]string, 0, len(c.processes))
	for _, p := range c.processes {
		names = append(names, p.name)
	}
	sort.Strings(names)
	return names
}

// Check returns an error naming every component that has exited. Tests can
// call it at the end to catch a control plane that crashed underneath them.
func (c *Cluster) Check() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	var errs []error
	for _, p := range c.processes {
		if err := p.deadError(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
