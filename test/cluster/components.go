package cluster

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// serviceClusterIPRange must contain 10.0.0.1, which the serving cert names.
const serviceClusterIPRange = "10.0.0.0/24"

func (c *Cluster) startEtcd(ctx context.Context, bin string) error {
	client := "http://127.0.0.1:" + strconv.Itoa(c.ports.etcdClient)
	peer := "http://127.0.0.1:" + strconv.Itoa(c.ports.etcdPeer)
	p, err := c.launch("etcd", bin,
		"--name=default",
		"--data-dir="+filepath.Join(c.etcdDir, "data"),
		"--listen-client-urls="+client,
		"--advertise-client-urls="+client,
		"--listen-peer-urls="+peer,
		"--initial-advertise-peer-urls="+peer,
		"--initial-cluster=default="+peer,
		"--log-level=warn",
	)
	if err != nil {
		return err
	}
	return waitHTTP(ctx, p, http.DefaultClient, client+"/health", `"health":"true"`)
}

func (c *Cluster) startAPIServer(ctx context.Context) error {
	args := []string{
		"--etcd-servers=http://127.0.0.1:" + strconv.Itoa(c.ports.etcdClient),
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(c.ports.apiServer),
		"--cert-dir=" + filepath.Join(c.Dir, "apiserver"),
		"--tls-cert-file=" + c.Certs.ServingCert,
		"--tls-private-key-file=" + c.Certs.ServingKey,
		"--client-ca-file=" + c.Certs.CACert,
		"--service-account-issuer=https://kubernetes.default.svc",
		"--service-account-key-file=" + c.Certs.ServiceAccountPub,
		"--service-account-signing-key-file=" + c.Certs.ServiceAccountKey,
		"--authorization-mode=Node,RBAC",
		"--service-cluster-ip-range=" + serviceClusterIPRange,
		// CSI node plugins run as privileged pods.
		"--allow-privileged=true",
		// For kubectl logs/exec against a node e2e kubelet: the admin identity.
		"--kubelet-client-certificate=" + c.Certs.AdminCert,
		"--kubelet-client-key=" + c.Certs.AdminKey,
		"--profiling=false",
	}
	args = append(args, c.opts.featureGatesFlag()...)
	args = append(args, c.opts.APIServerFlags...)
	p, err := c.launch("kube-apiserver", filepath.Join(c.BinDir, "kube-apiserver"), args...)
	if err != nil {
		return err
	}
	if err := c.writeKubeconfig(); err != nil {
		return err
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", c.Kubeconfig)
	if err != nil {
		return err
	}
	cfg.QPS, cfg.Burst = 100, 200
	c.restConfig = cfg
	if c.Client, err = kubernetes.NewForConfig(cfg); err != nil {
		return err
	}
	httpClient, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return err
	}
	return waitHTTP(ctx, p, httpClient, c.Host+"/readyz", "ok")
}

// writeKubeconfig writes the admin kubeconfig with embedded-by-path certs.
func (c *Cluster) writeKubeconfig() error {
	const name = "csi-hub-test"
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters[name] = &clientcmdapi.Cluster{Server: c.Host, CertificateAuthority: c.Certs.CACert}
	cfg.AuthInfos[name] = &clientcmdapi.AuthInfo{ClientCertificate: c.Certs.AdminCert, ClientKey: c.Certs.AdminKey}
	cfg.Contexts[name] = &clientcmdapi.Context{Cluster: name, AuthInfo: name}
	cfg.CurrentContext = name
	return clientcmd.WriteToFile(*cfg, c.Kubeconfig)
}

// delegatedAuthFlags let a component authenticate callers of its own secure
// port through the API server (else it logs warnings and denies everything
// but the always-allowed health paths).
func (c *Cluster) delegatedAuthFlags(component string) []string {
	return []string{
		"--kubeconfig=" + c.Kubeconfig,
		"--authentication-kubeconfig=" + c.Kubeconfig,
		"--authorization-kubeconfig=" + c.Kubeconfig,
		"--bind-address=127.0.0.1",
		"--cert-dir=" + filepath.Join(c.Dir, component),
	}
}

func (c *Cluster) startControllerManager(ctx context.Context) error {
	args := c.delegatedAuthFlags("kube-controller-manager")
	args = append(args,
		"--secure-port="+strconv.Itoa(c.ports.controllerManager),
		"--leader-elect=false",
		"--controllers=*",
		"--service-account-private-key-file="+c.Certs.ServiceAccountKey,
		"--root-ca-file="+c.Certs.CACert,
		"--service-cluster-ip-range="+serviceClusterIPRange,
	)
	args = append(args, c.opts.featureGatesFlag()...)
	args = append(args, c.opts.ControllerManagerFlags...)
	p, err := c.launch("kube-controller-manager", filepath.Join(c.BinDir, "kube-controller-manager"), args...)
	if err != nil {
		return err
	}
	url := "https://127.0.0.1:" + strconv.Itoa(c.ports.controllerManager) + "/healthz"
	if err := waitHTTP(ctx, p, insecureClient, url, "ok"); err != nil {
		return err
	}
	// /healthz answers before the controllers run; the service account
	// controller creating "default" in the default namespace shows they do.
	return waitFor(ctx, p, func(ctx context.Context) (bool, error) {
		_, err := c.Client.CoreV1().ServiceAccounts(metav1.NamespaceDefault).Get(ctx, "default", metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return false, nil
		}
		return err == nil, err
	}, "kube-controller-manager to create the default ServiceAccount")
}

func (c *Cluster) startScheduler(ctx context.Context) error {
	args := c.delegatedAuthFlags("kube-scheduler")
	args = append(args,
		"--secure-port="+strconv.Itoa(c.ports.scheduler),
		"--leader-elect=false",
	)
	args = append(args, c.opts.featureGatesFlag()...)
	args = append(args, c.opts.SchedulerFlags...)
	p, err := c.launch("kube-scheduler", filepath.Join(c.BinDir, "kube-scheduler"), args...)
	if err != nil {
		return err
	}
	return waitHTTP(ctx, p, insecureClient, "https://127.0.0.1:"+strconv.Itoa(c.ports.scheduler)+"/healthz", "ok")
}

// insecureClient probes components' self-signed health endpoints on loopback.
var insecureClient = &http.Client{
	Timeout:   5 * time.Second,
	Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}, //nolint:gosec // loopback health probe of a self-signed test component
}

// waitHTTP polls url until it answers 200 with a body containing want.
func waitHTTP(ctx context.Context, p *process, client *http.Client, url, want string) error {
	var last string
	err := waitFor(ctx, p, func(ctx context.Context) (bool, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return false, err
		}
		resp, err := client.Do(req)
		if err != nil {
			last = err.Error()
			return false, nil
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		last = fmt.Sprintf("HTTP %d: %s", resp.StatusCode, tail(string(body), 10))
		return resp.StatusCode == http.StatusOK && strings.Contains(string(body), want), nil
	}, url)
	if err != nil && last != "" {
		return fmt.Errorf("%w (last answer: %s)", err, last)
	}
	return err
}

// waitFor polls cond every 100ms until it is true, fails, the process exits
// (then the error carries its log tail), or ctx ends.
func waitFor(ctx context.Context, p *process, cond func(context.Context) (bool, error), what string) error {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		if err := p.deadError(); err != nil {
			return err
		}
		ok, err := cond(ctx)
		if err != nil {
			return fmt.Errorf("waiting for %s: %w", what, err)
		}
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w; last log lines of %s:\n%s", what, ctx.Err(), p.name, p.logTail(30))
		case <-p.done:
		case <-tick.C:
		}
	}
}
