package resizer

import (
	"errors"
	"flag"
	"reflect"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

func cond(t v1.PersistentVolumeClaimConditionType, msg string) v1.PersistentVolumeClaimCondition {
	return v1.PersistentVolumeClaimCondition{Type: t, Status: v1.ConditionTrue, Message: msg}
}

func condStrings(conds []v1.PersistentVolumeClaimCondition) []string {
	var out []string
	for _, c := range conds {
		out = append(out, string(c.Type)+":"+c.Message)
	}
	return out
}

func TestMergeConditions(t *testing.T) {
	foreign := cond("Custom", "keep")
	old := []v1.PersistentVolumeClaimCondition{
		cond(v1.PersistentVolumeClaimResizing, "old"), foreign,
		cond(v1.PersistentVolumeClaimControllerResizeError, "boom"),
		cond(v1.PersistentVolumeClaimVolumeModifyingVolume, "modifying"),
	}
	cases := []struct {
		name    string
		owned   map[v1.PersistentVolumeClaimConditionType]bool
		keepOld bool
		set     []v1.PersistentVolumeClaimCondition
		want    []string
	}{
		{"new attempt drops old resize conditions", resizeConditions, false,
			[]v1.PersistentVolumeClaimCondition{cond(v1.PersistentVolumeClaimResizing, "new")},
			[]string{"Resizing:new", "Custom:keep", "ModifyingVolume:modifying"}},
		{"retry keeps the error", resizeConditions, true,
			[]v1.PersistentVolumeClaimCondition{cond(v1.PersistentVolumeClaimResizing, "new")},
			[]string{"Resizing:new", "Custom:keep", "ControllerResizeError:boom", "ModifyingVolume:modifying"}},
		{"finish clears every resize condition", resizeConditions, false, nil,
			[]string{"Custom:keep", "ModifyingVolume:modifying"}},
		{"new condition appended", resizeConditions, true,
			[]v1.PersistentVolumeClaimCondition{cond(v1.PersistentVolumeClaimFileSystemResizePending, "node")},
			[]string{"Resizing:old", "Custom:keep", "ControllerResizeError:boom", "ModifyingVolume:modifying", "FileSystemResizePending:node"}},
		{"modify conditions are separate", modifyConditions, false,
			[]v1.PersistentVolumeClaimCondition{cond(v1.PersistentVolumeClaimVolumeModifyVolumeError, "bad")},
			[]string{"Resizing:old", "Custom:keep", "ControllerResizeError:boom", "ModifyVolumeError:bad"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := condStrings(mergeConditions(old, tc.owned, tc.keepOld, tc.set...))
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func TestErrorClasses(t *testing.T) {
	cases := []struct {
		err               error
		final, infeasible bool
	}{
		{status.Error(codes.InvalidArgument, ""), true, true},
		{status.Error(codes.OutOfRange, ""), true, true},
		{status.Error(codes.NotFound, ""), true, true},
		{status.Error(codes.Internal, ""), true, false},
		{status.Error(codes.FailedPrecondition, ""), true, false},
		{status.Error(codes.Unavailable, ""), false, false},
		{status.Error(codes.DeadlineExceeded, ""), false, false},
		{status.Error(codes.ResourceExhausted, ""), false, false},
		{status.Error(codes.Aborted, ""), false, false},
		{status.Error(codes.Canceled, ""), false, false},
		{errors.New("not a gRPC status"), false, false},
		{notCalled{errors.New("secret missing")}, true, false},
	}
	for _, tc := range cases {
		if got := isFinalError(tc.err); got != tc.final {
			t.Errorf("isFinalError(%v) = %v, want %v", tc.err, got, tc.final)
		}
		if got := isInfeasibleError(tc.err); got != tc.infeasible {
			t.Errorf("isInfeasibleError(%v) = %v, want %v", tc.err, got, tc.infeasible)
		}
	}
}

func claim(request, capacity string, state v1.ClaimResourceStatus, allocated string, conds ...v1.PersistentVolumeClaimCondition) *v1.PersistentVolumeClaim {
	pvc := &v1.PersistentVolumeClaim{}
	pvc.Spec.Resources.Requests = v1.ResourceList{v1.ResourceStorage: resource.MustParse(request)}
	pvc.Status.Capacity = v1.ResourceList{v1.ResourceStorage: resource.MustParse(capacity)}
	if state != "" {
		pvc.Status.AllocatedResourceStatuses = map[v1.ResourceName]v1.ClaimResourceStatus{v1.ResourceStorage: state}
	}
	if allocated != "" {
		pvc.Status.AllocatedResources = v1.ResourceList{v1.ResourceStorage: resource.MustParse(allocated)}
	}
	pvc.Status.Conditions = conds
	return pvc
}

func volume(size string) *v1.PersistentVolume {
	pv := &v1.PersistentVolume{}
	pv.Spec.Capacity = v1.ResourceList{v1.ResourceStorage: resource.MustParse(size)}
	return pv
}

// TestTargetSize is the recovery decision table (external-resizer's
// expandAndRecover).
func TestTargetSize(t *testing.T) {
	cases := []struct {
		name     string
		pvc      *v1.PersistentVolumeClaim
		pv       string
		final    bool
		nodeOnly bool
		want     string // "" = no action
	}{
		{"first expansion", claim("2Gi", "1Gi", "", ""), "1Gi", false, false, "2Gi"},
		{"uncertain controller expansion keeps its size", claim("3Gi", "1Gi", v1.PersistentVolumeClaimControllerResizeInProgress, "5Gi"), "1Gi", false, false, "5Gi"},
		{"final error lets the user lower", claim("3Gi", "1Gi", v1.PersistentVolumeClaimControllerResizeInProgress, "5Gi"), "1Gi", true, false, "3Gi"},
		{"infeasible lets the user lower", claim("3Gi", "1Gi", v1.PersistentVolumeClaimControllerResizeInfeasible, "100Gi"), "1Gi", false, false, "3Gi"},
		{"node pending: wait for kubelet", claim("4Gi", "1Gi", v1.PersistentVolumeClaimNodeResizePending, "2Gi"), "2Gi", false, false, ""},
		{"node pending, PV short of allocated", claim("4Gi", "1Gi", v1.PersistentVolumeClaimNodeResizePending, "2Gi"), "1Gi", false, false, "2Gi"},
		{"node infeasible: redo allocated", claim("4Gi", "1Gi", v1.PersistentVolumeClaimNodeResizeInfeasible, "2Gi"), "1Gi", false, false, "2Gi"},
		{"PV done, records missing", claim("2Gi", "1Gi", v1.PersistentVolumeClaimControllerResizeInProgress, "2Gi"), "2Gi", false, false, "2Gi"},
		{"PV done, user lowered after success", claim("2Gi", "1Gi", v1.PersistentVolumeClaimControllerResizeInProgress, "3Gi"), "3Gi", false, false, "3Gi"},
		{"PV done, node infeasible, node-only driver", claim("2Gi", "1Gi", v1.PersistentVolumeClaimNodeResizeInfeasible, "3Gi"), "3Gi", false, true, "2Gi"},
		{"PV done, FileSystemResizePending (old API server)", claim("2Gi", "1Gi", "", "", cond(v1.PersistentVolumeClaimFileSystemResizePending, "")), "2Gi", false, false, ""},
		{"PV done, no status", claim("2Gi", "1Gi", "", ""), "2Gi", false, false, "2Gi"},
		{"PV done, only allocated", claim("2Gi", "1Gi", "", "3Gi"), "3Gi", false, false, "3Gi"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := &expander{nodeOnly: tc.nodeOnly, finalErr: map[string]bool{}}
			e.setFinalError("ns/pvc", tc.final)
			size, act := e.targetSize("ns/pvc", tc.pvc, volume(tc.pv))
			switch {
			case tc.want == "" && act:
				t.Errorf("acts with %s, want no action", size.String())
			case tc.want != "" && (!act || size.Cmp(resource.MustParse(tc.want)) != 0):
				t.Errorf("got %s (act %v), want %s", size.String(), act, tc.want)
			}
		})
	}
}

func TestRelevantUpdates(t *testing.T) {
	base := claim("1Gi", "1Gi", "", "")
	base.ResourceVersion = "1"
	base.Status.Phase = v1.ClaimBound
	changed := func(f func(*v1.PersistentVolumeClaim)) *v1.PersistentVolumeClaim {
		c := base.DeepCopy()
		c.ResourceVersion = "2"
		f(c)
		return c
	}
	gold := "gold"
	cases := []struct {
		name           string
		newPVC         *v1.PersistentVolumeClaim
		expand, modify bool
	}{
		{"resync", func() *v1.PersistentVolumeClaim { c := base.DeepCopy(); return c }(), true, true},
		{"label only", changed(func(c *v1.PersistentVolumeClaim) { c.Labels = map[string]string{"a": "b"} }), false, false},
		{"request raised", changed(func(c *v1.PersistentVolumeClaim) {
			c.Spec.Resources.Requests[v1.ResourceStorage] = resource.MustParse("2Gi")
		}), true, false},
		{"own status write", changed(func(c *v1.PersistentVolumeClaim) {
			c.Status.AllocatedResourceStatuses = map[v1.ResourceName]v1.ClaimResourceStatus{v1.ResourceStorage: v1.PersistentVolumeClaimControllerResizeInProgress}
		}), false, false},
		{"kubelet failed", changed(func(c *v1.PersistentVolumeClaim) {
			c.Status.AllocatedResourceStatuses = map[v1.ResourceName]v1.ClaimResourceStatus{v1.ResourceStorage: v1.PersistentVolumeClaimNodeResizeInfeasible}
		}), true, false},
		{"capacity grew", changed(func(c *v1.PersistentVolumeClaim) { c.Status.Capacity[v1.ResourceStorage] = resource.MustParse("2Gi") }), true, false},
		{"resizer annotation", changed(func(c *v1.PersistentVolumeClaim) { c.Annotations = map[string]string{annResizer: "x"} }), true, false},
		{"class set", changed(func(c *v1.PersistentVolumeClaim) { c.Spec.VolumeAttributesClassName = &gold }), false, true},
	}
	for _, tc := range cases {
		if got := expansionRelevant(base, tc.newPVC); got != tc.expand {
			t.Errorf("%s: expansionRelevant = %v, want %v", tc.name, got, tc.expand)
		}
		if got := modificationRelevant(base, tc.newPVC); got != tc.modify {
			t.Errorf("%s: modificationRelevant = %v, want %v", tc.name, got, tc.modify)
		}
	}
}

func TestConfigFlags(t *testing.T) {
	cfg := DefaultConfig()
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	cfg.AddFlags(fs)
	err := fs.Parse([]string{"--extra-modify-metadata", "--resizer-annotate-fs-resize"})
	if err != nil {
		t.Fatal(err)
	}
	want := Config{ExtraModifyMetadata: true, AnnotateFsResize: true, HandleVolumeInUseError: true}
	if cfg != want {
		t.Errorf("parsed %+v, want %+v", cfg, want)
	}
	// external-resizer's default: wait for Pods to go after FailedPrecondition.
	if f := fs.Lookup("handle-volume-inuse-error"); f == nil || f.DefValue != "true" {
		t.Errorf("--handle-volume-inuse-error = %v, want registered with default true as external-resizer", f)
	}
}
