package provisioner

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	snapv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	snapclient "github.com/kubernetes-csi/external-snapshotter/client/v8/clientset/versioned"
	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/csi-hub/csi-hub/internal/hub"
	"github.com/csi-hub/csi-hub/internal/hubtest"
	"github.com/csi-hub/csi-hub/provisioner/datasource"
	"github.com/csi-hub/csi-hub/snapshotter"
	"github.com/csi-hub/csi-hub/test/fakedriver"
)

// sourceEnv is an env whose hub runs the provisioner and the snapshotter on
// the shared snapshot API, against the cluster's real snapshot-controller.
type sourceEnv struct {
	*env
	snaps snapclient.Interface
}

func newSourceEnv(t testing.TB, opts fakedriver.Options) *sourceEnv {
	t.Helper()
	e := baseEnv(t, DefaultConfig())
	e.startFake(opts)
	s := &sourceEnv{env: e}
	s.startHub()
	return s
}

func (s *sourceEnv) startHub() {
	s.t.Helper()
	var err error
	if s.snaps, err = snapclient.NewForConfig(s.c.RESTConfig()); err != nil {
		s.t.Fatal(err)
	}
	opts := hubtest.Options(s.socket)
	if s.tuneHub != nil {
		s.tuneHub(&opts)
	}
	s.hub = hubtest.Start(s.t, s.c.RESTConfig(), opts, func(h *hub.Hub) error {
		ctrl, err := New(s.t.Context(), hubDeps(h, s.cfg), s.cfg)
		if err != nil {
			return err
		}
		cfg := snapshotter.DefaultConfig()
		cfg.CRDPollInterval = time.Second
		d, err := snapshotterDeps(h)
		if err != nil {
			return err
		}
		snap, err := snapshotter.New(s.t.Context(), d, cfg)
		if err != nil {
			return err
		}
		s.ctrl = ctrl
		h.Add(ctrl)
		h.Add(snap)
		return nil
	})
}

// snapshotClass creates a Delete-policy VolumeSnapshotClass of the driver.
func (s *sourceEnv) snapshotClass() string {
	s.t.Helper()
	name := s.ns + "-snap"
	cls := &snapv1.VolumeSnapshotClass{ObjectMeta: metav1.ObjectMeta{Name: name}, Driver: s.driver,
		DeletionPolicy: snapv1.VolumeSnapshotContentDelete}
	if _, err := s.snaps.SnapshotV1().VolumeSnapshotClasses().Create(s.ctx, cls, metav1.CreateOptions{}); err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(func() {
		_ = s.snaps.SnapshotV1().VolumeSnapshotClasses().Delete(context.Background(), name, metav1.DeleteOptions{})
	})
	return name
}

// takeSnapshot snapshots pvc and waits until it is readyToUse.
func (s *sourceEnv) takeSnapshot(name, pvc, class string) (*snapv1.VolumeSnapshot, *snapv1.VolumeSnapshotContent) {
	s.t.Helper()
	s.createSnapshot(name, pvc, class)
	return s.waitSnapshotReady(name)
}

func (s *sourceEnv) createSnapshot(name, pvc, class string) {
	s.t.Helper()
	vs := &snapv1.VolumeSnapshot{ObjectMeta: metav1.ObjectMeta{Namespace: s.ns, Name: name},
		Spec: snapv1.VolumeSnapshotSpec{Source: snapv1.VolumeSnapshotSource{PersistentVolumeClaimName: ptr.To(pvc)},
			VolumeSnapshotClassName: ptr.To(class)}}
	if _, err := s.snaps.SnapshotV1().VolumeSnapshots(s.ns).Create(s.ctx, vs, metav1.CreateOptions{}); err != nil {
		s.t.Fatal(err)
	}
}

func (s *sourceEnv) waitSnapshotReady(name string) (*snapv1.VolumeSnapshot, *snapv1.VolumeSnapshotContent) {
	s.t.Helper()
	var vs *snapv1.VolumeSnapshot
	s.eventually(90*time.Second, "VolumeSnapshot "+name+" to be readyToUse", func() (bool, error) {
		var err error
		vs, err = s.snaps.SnapshotV1().VolumeSnapshots(s.ns).Get(s.ctx, name, metav1.GetOptions{})
		return err == nil && datasource.SnapshotReady(vs), nil
	})
	content, err := s.snaps.SnapshotV1().VolumeSnapshotContents().Get(s.ctx, *vs.Status.BoundVolumeSnapshotContentName, metav1.GetOptions{})
	if err != nil {
		s.t.Fatal(err)
	}
	return vs, content
}

func (s *sourceEnv) snapshotFinalizers(name string) []string {
	s.t.Helper()
	vs, err := s.snaps.SnapshotV1().VolumeSnapshots(s.ns).Get(s.ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		s.t.Fatal(err)
	}
	return vs.Finalizers
}

func (s *sourceEnv) claimFinalizers(name string) []string {
	s.t.Helper()
	pvc, err := s.kube.CoreV1().PersistentVolumeClaims(s.ns).Get(s.ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		s.t.Fatal(err)
	}
	return pvc.Finalizers
}

// waitNoFinalizer waits until the finalizer is gone from what list returns.
func (s *sourceEnv) waitNoFinalizer(what, finalizer string, list func() []string) {
	s.t.Helper()
	s.eventually(30*time.Second, "finalizer "+finalizer+" to leave "+what, func() (bool, error) {
		return !slices.Contains(list(), finalizer), nil
	})
}

// fromSnapshot / fromClaim set the claim's data source.
func fromSnapshot(name string) pvcOption {
	return func(p *v1.PersistentVolumeClaim) {
		p.Spec.DataSource = &v1.TypedLocalObjectReference{APIGroup: ptr.To(KindVolumeSnapshot.Group), Kind: KindVolumeSnapshot.Kind, Name: name}
	}
}

func fromClaim(name string) pvcOption {
	return func(p *v1.PersistentVolumeClaim) {
		p.Spec.DataSource = &v1.TypedLocalObjectReference{Kind: KindPVC.Kind, Name: name}
	}
}

func blockMode(p *v1.PersistentVolumeClaim) {
	m := v1.PersistentVolumeBlock
	p.Spec.VolumeMode = &m
}

// requireNoVolume fails if the driver ever got a CreateVolume for the claim.
func (s *sourceEnv) requireNoVolume(claim string) {
	s.t.Helper()
	pvc, err := s.kube.CoreV1().PersistentVolumeClaims(s.ns).Get(s.ctx, claim, metav1.GetOptions{})
	if err != nil {
		s.t.Fatal(err)
	}
	if reqs := s.createRequests("pvc-" + string(pvc.UID)); len(reqs) != 0 {
		s.t.Errorf("claim %s: driver got %d CreateVolume calls, want none", claim, len(reqs))
	}
	if pvc.Spec.VolumeName != "" {
		s.t.Errorf("claim %s is bound to %s, want it pending", claim, pvc.Spec.VolumeName)
	}
}

// snapshotterDeps is internal/app's SnapshotterDeps for this package's tests,
// which cannot import internal/app (it imports this package).
func snapshotterDeps(h *hub.Hub) (snapshotter.Deps, error) {
	api, err := h.Snapshots()
	if err != nil {
		return snapshotter.Deps{}, err
	}
	d := snapshotter.Deps{DriverConn: h.DriverConn(), Kube: h.Kube, Snapshots: api,
		Events:     h.Recorder("csi-snapshotter " + h.Driver),
		RetryStart: h.Opts.RetryIntervalStart, RetryMax: h.Opts.RetryIntervalMax,
		Work: hub.Work{Steps: h.Steps, NewQueue: h.NewQueue, Tuning: h.Opts.Tune(hub.Tuning{}, snapshotter.Defaults)}}
	if h.Conn.Caps.Plugin[csi.PluginCapability_Service_GROUP_CONTROLLER_SERVICE] {
		d.GroupCSI = csi.NewGroupControllerClient(h.Conn.ClientConn)
	}
	return d, nil
}
