// Package groupsnapshot builds groupsnapshot.test, a Kubernetes e2e test
// binary like e2e.test (same framework flags, same TestMain and
// RunE2ETests) that runs upstream's VolumeGroupSnapshottable storage suite
// (k8s.io/kubernetes test/e2e/storage/testsuites, [Feature:volumegroupsnapshot])
// against an external CSI driver described by the usual
// -storage.testdriver YAML.
//
// Why a binary of its own: in k8s.io/kubernetes v1.34.4 the external
// testdriver (test/e2e/storage/external) does not implement
// storageframework.VoulmeGroupSnapshottableTestDriver (it has no
// GetVolumeGroupSnapshotClass), so e2e.test skips the suite for every external
// driver with "does not support group snapshots". Here the driver upstream
// loads from the YAML is wrapped with that one method; everything else (the
// YAML loading, the spec texts, the suite itself) is upstream's.
//
// Importing k8s.io/kubernetes/test/e2e (for RunE2ETests and e2e.test's suite
// set-up) brings the specs of its test/e2e/common packages along (367 of the
// binary's 368); run it with a focus on volumegroupsnapshottable, as
// test/conformance does.
//
// hack/ensure-e2e.sh builds it (go test -c) next to e2e.test; test/conformance
// runs it as a pass of its own.
package groupsnapshot

import (
	"context"
	"flag"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/onsi/ginkgo/v2"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic"
	"k8s.io/component-base/version"
	"k8s.io/kubernetes/test/e2e"
	"k8s.io/kubernetes/test/e2e/framework"
	"k8s.io/kubernetes/test/e2e/framework/config"
	"k8s.io/kubernetes/test/e2e/framework/testfiles"
	storageframework "k8s.io/kubernetes/test/e2e/storage/framework"
	"k8s.io/kubernetes/test/e2e/storage/testsuites"
	"k8s.io/kubernetes/test/e2e/storage/utils"
	e2etestingmanifests "k8s.io/kubernetes/test/e2e/testing-manifests"
	testfixtures "k8s.io/kubernetes/test/fixtures"

	// As e2e.test: the feature tags, the -storage.testdriver flag (upstream's
	// external package, which loads the YAML and defines the suites for it)
	// and the framework's hooks.
	_ "k8s.io/kubernetes/test/e2e/feature"
	_ "k8s.io/kubernetes/test/e2e/framework/debug/init"
	_ "k8s.io/kubernetes/test/e2e/framework/metrics/init"
	_ "k8s.io/kubernetes/test/e2e/framework/node/init"
	_ "k8s.io/kubernetes/test/e2e/storage/external"
	_ "k8s.io/kubernetes/test/utils/format"
)

// The external package defines testsuites.CSISuites for each
// -storage.testdriver file while the flags are parsed (in TestMain); this
// binary defines only the group snapshot suite, for the wrapped driver.
func init() {
	testsuites.CSISuites = []func() storageframework.TestSuite{newGroupSnapshotSuite}
}

// groupSnapshotSuite is upstream's VolumeGroupSnapshottable suite given the
// wrapped driver; its name, patterns and tags are upstream's, so the specs'
// texts are exactly e2e.test's.
type groupSnapshotSuite struct {
	storageframework.TestSuite
}

func newGroupSnapshotSuite() storageframework.TestSuite {
	return groupSnapshotSuite{testsuites.InitVolumeGroupSnapshottableTestSuite()}
}

func (s groupSnapshotSuite) SkipUnsupportedTests(driver storageframework.TestDriver, pattern storageframework.TestPattern) {
	s.TestSuite.SkipUnsupportedTests(wrap(driver), pattern)
}

func (s groupSnapshotSuite) DefineTests(driver storageframework.TestDriver, pattern storageframework.TestPattern) {
	// Before the suite's own nodes (its framework's BeforeEach), see deleteClassesAfterNamespace.
	ginkgo.BeforeEach(deleteClassesAfterNamespace)
	s.TestSuite.DefineTests(wrap(driver), pattern)
}

// externalDriver is what upstream's external driver (driverDefinition)
// implements and the group snapshot suite uses: dynamic provisioning (the
// group's claims), snapshots and the YAML's timeouts.
type externalDriver interface {
	storageframework.DynamicPVTestDriver
	storageframework.SnapshottableTestDriver
	storageframework.CustomTimeoutsTestDriver
}

// groupSnapshotDriver adds GetVolumeGroupSnapshotClass to the external driver.
type groupSnapshotDriver struct {
	externalDriver
}

var _ storageframework.VoulmeGroupSnapshottableTestDriver = groupSnapshotDriver{}

func wrap(driver storageframework.TestDriver) storageframework.TestDriver {
	d, ok := driver.(externalDriver)
	if !ok {
		// Only upstream's external package defines suites here, and its
		// driver implements all of externalDriver.
		panic(fmt.Sprintf("groupsnapshot.test: driver %T is not upstream's external driver", driver))
	}
	return groupSnapshotDriver{d}
}

// GetVolumeGroupSnapshotClass returns a VolumeGroupSnapshotClass for the
// driver (groupsnapshot.storage.k8s.io/v1beta1, as the v1.34 suite creates
// it), made by the same upstream helper the hostpath driver's uses. The suite
// passes the class's deletion policy as parameters["deletionPolicy"]; the
// helper copies that into the class's deletionPolicy, and it is removed from
// the class's parameters, which go to the CSI driver in
// CreateVolumeGroupSnapshot: block.csi-hub.io refuses parameters it does not
// know (InvalidArgument), and deletionPolicy is not a driver parameter.
func (d groupSnapshotDriver) GetVolumeGroupSnapshotClass(ctx context.Context, config *storageframework.PerTestConfig, parameters map[string]string) *unstructured.Unstructured {
	params := map[string]string{}
	for k, v := range parameters {
		params[k] = v
	}
	class := utils.GenerateVolumeGroupSnapshotClassSpec(d.GetDriverInfo().Name, params, config.Framework.Namespace.Name)
	delete(params, "deletionPolicy")
	created.Lock()
	created.classes = append(created.classes, class.GetName())
	created.Unlock()
	return class
}

// created records the classes made here during the current spec: the suite
// creates each under its client-side generated name but never deletes it
// (v1.34.4 does not call VolumeGroupSnapshotResource.CleanupResource), which
// would leave one cluster-scoped class behind per run. Specs run one at a time
// per process.
var created struct {
	sync.Mutex
	classes []string
}

// deleteClassesAfterNamespace is called in a BeforeEach defined before the
// framework's, so its DeferCleanup runs after the framework has deleted the
// test namespace (LIFO): the group snapshots' deletion (snapshot-controller and
// the sidecar) may still look the class up, so it first waits until no
// VolumeGroupSnapshotContent names the class.
func deleteClassesAfterNamespace() {
	created.Lock()
	created.classes = nil
	created.Unlock()
	ginkgo.DeferCleanup(func(ctx context.Context) {
		created.Lock()
		names := created.classes
		created.classes = nil
		created.Unlock()
		if len(names) == 0 {
			return
		}
		cfg, err := framework.LoadConfig()
		framework.ExpectNoError(err, "client config")
		dc, err := dynamic.NewForConfig(cfg)
		framework.ExpectNoError(err, "dynamic client")
		for _, name := range names {
			err := wait.PollUntilContextTimeout(ctx, 2*time.Second, 5*time.Minute, true, func(ctx context.Context) (bool, error) {
				list, err := dc.Resource(utils.VolumeGroupSnapshotContentGVR).List(ctx, metav1.ListOptions{})
				if err != nil {
					return false, nil
				}
				for _, c := range list.Items {
					if class, _, _ := unstructured.NestedString(c.Object, "spec", "volumeGroupSnapshotClassName"); class == name {
						return false, nil
					}
				}
				return true, nil
			})
			if err != nil {
				framework.Logf("VolumeGroupSnapshotClass %s: VolumeGroupSnapshotContents still name it after 5m; deleting it anyway", name)
			}
			err = dc.Resource(utils.VolumeGroupSnapshotClassGVR).Delete(ctx, name, metav1.DeleteOptions{})
			if err != nil && !apierrors.IsNotFound(err) {
				framework.Failf("deleting VolumeGroupSnapshotClass %s: %v", name, err)
			}
			framework.Logf("deleted VolumeGroupSnapshotClass %s", name)
		}
	})
}

// handleFlags, TestMain and TestE2E follow k8s.io/kubernetes test/e2e/e2e_test.go.
func handleFlags() {
	config.CopyFlags(config.Flags, flag.CommandLine)
	framework.RegisterCommonFlags(flag.CommandLine)
	framework.RegisterClusterFlags(flag.CommandLine)
	flag.Parse()
}

func TestMain(m *testing.M) {
	var versionFlag bool
	flag.CommandLine.BoolVar(&versionFlag, "version", false, "Displays version information.")
	handleFlags()
	if versionFlag {
		fmt.Printf("%s\n", version.Get())
		os.Exit(0)
	}
	if flag.CommandLine.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "unknown additional command line arguments: %s", flag.CommandLine.Args())
		os.Exit(1)
	}
	testfiles.AddFileSource(e2etestingmanifests.GetE2ETestingManifestsFS())
	testfiles.AddFileSource(testfixtures.GetTestFixturesFS())
	framework.AfterReadingAllFlags(&framework.TestContext)
	if framework.TestContext.RepoRoot != "" {
		testfiles.AddFileSource(testfiles.RootFileSource{Root: framework.TestContext.RepoRoot})
	}
	os.Exit(m.Run())
}

// TestE2E runs the specs through upstream's RunE2ETests, with e2e.test's
// suite set-up (SynchronizedBeforeSuite of k8s.io/kubernetes/test/e2e).
func TestE2E(t *testing.T) {
	e2e.RunE2ETests(t)
}
