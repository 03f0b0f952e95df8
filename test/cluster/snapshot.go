package cluster

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apiextensionsclient "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
)

// InstallSnapshotCRDs installs (or updates) the snapshot.storage.k8s.io and
// groupsnapshot.storage.k8s.io CRDs shipped by the module
// github.com/kubernetes-csi/external-snapshotter/client/v8 at the version in
// the project's go.mod (staged by hack/ensure-snapshot-controller.sh), and
// waits until they are Established. Start does this for WithSnapshotController.
func (c *Cluster) InstallSnapshotCRDs(ctx context.Context) error {
	if c.snapDir == "" {
		dir, err := snapshotDir(c.opts.Logf)
		if err != nil {
			return err
		}
		c.snapDir = dir
	}
	files, err := filepath.Glob(filepath.Join(c.snapDir, "crd-client-*", "*.yaml"))
	if err != nil || len(files) == 0 {
		return fmt.Errorf("no snapshot CRD manifests under %s (run hack/ensure-snapshot-controller.sh)", c.snapDir)
	}
	client, err := apiextensionsclient.NewForConfig(c.restConfig)
	if err != nil {
		return err
	}
	crds := client.ApiextensionsV1().CustomResourceDefinitions()
	var names []string
	for _, file := range files {
		crd, err := readCRD(file)
		if err != nil {
			return err
		}
		if _, err := crds.Create(ctx, crd, metav1.CreateOptions{}); apierrors.IsAlreadyExists(err) {
			existing, getErr := crds.Get(ctx, crd.Name, metav1.GetOptions{})
			if getErr != nil {
				return getErr
			}
			crd.ResourceVersion = existing.ResourceVersion
			_, err = crds.Update(ctx, crd, metav1.UpdateOptions{})
			if err != nil {
				return fmt.Errorf("updating CRD %s: %w", crd.Name, err)
			}
		} else if err != nil {
			return fmt.Errorf("creating CRD %s from %s: %w", crd.Name, file, err)
		}
		names = append(names, crd.Name)
	}
	for _, name := range names {
		err := wait.PollUntilContextCancel(ctx, 100*time.Millisecond, true, func(ctx context.Context) (bool, error) {
			crd, err := crds.Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return false, err
			}
			for _, cond := range crd.Status.Conditions {
				if cond.Type == apiextensionsv1.Established && cond.Status == apiextensionsv1.ConditionTrue {
					return true, nil
				}
			}
			return false, nil
		})
		if err != nil {
			return fmt.Errorf("waiting for CRD %s to be Established: %w", name, err)
		}
	}
	return nil
}

func readCRD(file string) (*apiextensionsv1.CustomResourceDefinition, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	crd := &apiextensionsv1.CustomResourceDefinition{}
	if err := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096).Decode(crd); err != nil {
		return nil, fmt.Errorf("decoding %s: %w", file, err)
	}
	if crd.Kind != "CustomResourceDefinition" || crd.Name == "" {
		return nil, fmt.Errorf("%s is not a CustomResourceDefinition (kind %q)", file, crd.Kind)
	}
	return crd, nil
}

// startSnapshotController installs the CRDs (the controller exits if they are
// missing) and runs the controller until its metrics endpoint answers, which
// it opens only after it has found the CRDs.
func (c *Cluster) startSnapshotController(ctx context.Context) error {
	if err := c.InstallSnapshotCRDs(ctx); err != nil {
		return err
	}
	endpoint := "127.0.0.1:" + strconv.Itoa(c.ports.snapshotController)
	p, err := c.launch("snapshot-controller", filepath.Join(c.snapDir, "bin", "snapshot-controller"),
		append([]string{
			"--kubeconfig=" + c.Kubeconfig,
			"--leader-election=false",
			"--http-endpoint=" + endpoint,
			// Tests create and delete quickly; the default 1s..5m backoff would
			// make a retried snapshot wait minutes.
			"--retry-interval-max=10s",
			"--v=4",
		}, c.opts.SnapshotControllerFlags...)...,
	)
	if err != nil {
		return err
	}
	return waitHTTP(ctx, p, &http.Client{Timeout: insecureClient.Timeout}, "http://"+endpoint+"/metrics", "")
}
