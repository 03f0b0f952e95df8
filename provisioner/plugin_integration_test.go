package provisioner

import (
	"strings"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/csi-hub/csi-hub/plugin"
	"github.com/csi-hub/csi-hub/plugin/plugintest"
)

// The companion driver (block.csi-hub.io: a real file-backed pool, real
// store, its own topology) provisions a block and a filesystem volume
// through csi-hub, and deleting the claims removes them from its pool.
func TestWithCompanionPlugin(t *testing.T) {
	e := baseEnv(t, DefaultConfig())
	e.driver = strings.TrimSuffix(e.driver, ".fake.csi-hub.io") + ".block.csi-hub.io"
	nodeName := e.ns + "-storage"
	d := plugintest.Start(t, plugintest.Options{DriverName: e.driver, NodeID: nodeName, Capacity: 1 << 30})
	e.socket = d.SocketPath
	key := plugin.TopologyNodeKey(e.driver)
	if _, err := e.kube.CoreV1().Nodes().Create(e.ctx, &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: nodeName,
		Labels: map[string]string{key: nodeName}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.kube.CoreV1().Nodes().Delete(e.ctx, nodeName, metav1.DeleteOptions{}) })
	if _, err := e.c.CreateCSINode(e.ctx, nodeName, e.driver, nodeName, []string{key}); err != nil {
		t.Fatal(err)
	}
	e.startHub()

	sc := e.storageClass("pool", withPolicy(v1.PersistentVolumeReclaimDelete))
	block := v1.PersistentVolumeBlock
	e.createPVC("raw", sc.Name, "64Mi", func(p *v1.PersistentVolumeClaim) { p.Spec.VolumeMode = &block })
	e.createPVC("fs", sc.Name, "32Mi")
	var pvs []*v1.PersistentVolume
	for _, name := range []string{"raw", "fs"} {
		_, pv := e.waitBound(name)
		pvs = append(pvs, pv)
		terms := pv.Spec.NodeAffinity.Required.NodeSelectorTerms
		if len(terms) != 1 || terms[0].MatchExpressions[0].Key != key || terms[0].MatchExpressions[0].Values[0] != nodeName {
			t.Errorf("PV %s node affinity %+v, want %s=%s", pv.Name, pv.Spec.NodeAffinity, key, nodeName)
		}
		if pv.Spec.CSI.VolumeAttributes[provisionerIDKey] != e.ctrl.Identity() {
			t.Errorf("PV %s volumeAttributes %v lack the provisioner identity", pv.Name, pv.Spec.CSI.VolumeAttributes)
		}
	}
	if pvs[0].Spec.CSI.FSType != "" || pvs[1].Spec.CSI.FSType != "" {
		t.Errorf("fsType %q/%q: block has none, and with no fstype parameter the driver chooses", pvs[0].Spec.CSI.FSType, pvs[1].Spec.CSI.FSType)
	}
	listed := func() map[string]bool {
		resp, err := d.ControllerClient().ListVolumes(e.ctx, &csi.ListVolumesRequest{})
		if err != nil {
			t.Fatal(err)
		}
		ids := map[string]bool{}
		for _, en := range resp.Entries {
			ids[en.Volume.VolumeId] = true
		}
		return ids
	}
	ids := listed()
	for _, pv := range pvs {
		if !ids[pv.Spec.CSI.VolumeHandle] {
			t.Errorf("driver does not list volume %s of PV %s (has %v)", pv.Spec.CSI.VolumeHandle, pv.Name, ids)
		}
	}

	e.deletePVC("raw")
	e.deletePVC("fs")
	for _, pv := range pvs {
		e.waitPVGone(pv.Name)
	}
	if ids := listed(); len(ids) != 0 {
		t.Errorf("driver still has volumes %v after the claims were deleted", ids)
	}
}
