package flow

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	snapclient "github.com/kubernetes-csi/external-snapshotter/client/v8/clientset/versioned"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// Main runs `csi-hub explain [flags] pvc/NAMESPACE/NAME` and returns the exit code.
func Main(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("csi-hub explain", flag.ContinueOnError)
	fs.SetOutput(stderr)
	server := fs.String("server", envOr("CSI_HUB_SERVER", "http://127.0.0.1:8080"), "A running csi-hub's --http-endpoint (its /steps), e.g. http://10.88.0.5:8080.")
	nodes := fs.String("node", os.Getenv("CSI_HUB_NODE"), "Comma-separated driver node endpoints (csi-hub-plugin --steps-endpoint) to read the kubelet's node steps from.")
	kubeconfig := fs.String("kubeconfig", os.Getenv("KUBECONFIG"), "Kubeconfig for reading what the API still shows (default: in-cluster, then ~/.kube/config).")
	noAPI := fs.Bool("no-api", false, "Do not read the Kubernetes API, only csi-hub's steps.")
	brief := fs.Bool("brief", false, "Leave out the paragraph explaining each kind of step.")
	timeout := fs.Duration("timeout", 30*time.Second, "How long to wait for csi-hub and the API.")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: csi-hub explain [flags] pvc/NAMESPACE/NAME | pv/NAME | volumeattachment/NAME | volumesnapshot/NAMESPACE/NAME")
		fmt.Fprintln(stderr, "Prints the story of one object as numbered steps, from a running csi-hub's /steps and the Kubernetes API.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return 2
	}
	ref, err := ParseRef(fs.Arg(0))
	if err != nil {
		fmt.Fprintln(stderr, "csi-hub explain:", err)
		return 2
	}
	o := ExplainOptions{Server: *server, Why: !*brief}
	for _, n := range strings.Split(*nodes, ",") {
		if n = strings.TrimSpace(n); n != "" {
			o.Nodes = append(o.Nodes, n)
		}
	}
	if !*noAPI {
		cfg, err := restConfig(*kubeconfig)
		if err != nil {
			fmt.Fprintf(stderr, "csi-hub explain: no Kubernetes API (%v); showing csi-hub's steps only\n", err)
		} else {
			o.Kube, _ = kubernetes.NewForConfig(cfg)
			o.Snap, _ = snapclient.NewForConfig(cfg)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	if err := Explain(ctx, stdout, ref, o); err != nil {
		fmt.Fprintln(stderr, "csi-hub explain:", err)
		return 1
	}
	return 0
}

func envOr(k, d string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return d
}

func restConfig(kubeconfig string) (*rest.Config, error) {
	if kubeconfig == "" {
		if cfg, err := rest.InClusterConfig(); err == nil {
			return cfg, nil
		}
	}
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = kubeconfig
	return clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{}).ClientConfig()
}
