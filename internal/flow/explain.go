package flow

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"time"

	snapclient "github.com/kubernetes-csi/external-snapshotter/client/v8/clientset/versioned"
	"k8s.io/client-go/kubernetes"

	"github.com/csi-hub/csi-hub/internal/steps"
)

// Ref is the object explain tells the story of.
type Ref struct {
	Kind      string // PersistentVolumeClaim, PersistentVolume, VolumeAttachment, VolumeSnapshot
	Namespace string
	Name      string
}

// Object is the name steps use for r ("PersistentVolumeClaim ns/name").
func (r Ref) Object() string {
	if r.Namespace == "" {
		return r.Kind + " " + r.Name
	}
	return r.Kind + " " + r.Namespace + "/" + r.Name
}

var refKinds = map[string]struct {
	kind       string
	namespaced bool
}{
	"pvc": {"PersistentVolumeClaim", true}, "persistentvolumeclaim": {"PersistentVolumeClaim", true},
	"pv": {"PersistentVolume", false}, "persistentvolume": {"PersistentVolume", false},
	"va": {"VolumeAttachment", false}, "volumeattachment": {"VolumeAttachment", false},
	"vs": {"VolumeSnapshot", true}, "volumesnapshot": {"VolumeSnapshot", true},
}

// ParseRef reads pvc/NAMESPACE/NAME, pv/NAME, volumeattachment/NAME or
// volumesnapshot/NAMESPACE/NAME.
func ParseRef(s string) (Ref, error) {
	parts := strings.Split(s, "/")
	k, ok := refKinds[strings.ToLower(parts[0])]
	if !ok {
		return Ref{}, fmt.Errorf("%q: want pvc/NAMESPACE/NAME, pv/NAME, volumeattachment/NAME or volumesnapshot/NAMESPACE/NAME", s)
	}
	want := 2
	if k.namespaced {
		want = 3
	}
	if len(parts) != want || slicesHasEmpty(parts) {
		if k.namespaced {
			return Ref{}, fmt.Errorf("%q: a %s is named %s/NAMESPACE/NAME", s, k.kind, parts[0])
		}
		return Ref{}, fmt.Errorf("%q: a %s is named %s/NAME", s, k.kind, parts[0])
	}
	if k.namespaced {
		return Ref{Kind: k.kind, Namespace: parts[1], Name: parts[2]}, nil
	}
	return Ref{Kind: k.kind, Name: parts[1]}, nil
}

func slicesHasEmpty(p []string) bool {
	for _, s := range p {
		if s == "" {
			return true
		}
	}
	return false
}

// ExplainOptions say where the story is read from.
type ExplainOptions struct {
	// Server is a running csi-hub's HTTP endpoint (http://host:port); Nodes
	// are driver plugins' --steps-endpoint URLs. Either may be empty.
	Server string
	Nodes  []string
	// Kube and Snap read what the API still shows; nil: no fallback.
	Kube kubernetes.Interface
	Snap snapclient.Interface
	// Why adds each step kind's paragraph the first time the kind appears.
	Why  bool
	HTTP *http.Client
}

// Explain writes the numbered story of ref to w: csi-hub's recorded steps,
// preceded by what the API still shows (events, annotations, status) when the
// object is older than the steps csi-hub still keeps.
func Explain(ctx context.Context, w io.Writer, ref Ref, o ExplainOptions) error {
	if o.HTTP == nil {
		o.HTTP = &http.Client{Timeout: 10 * time.Second}
	}
	var all []steps.Step
	var ringErr error
	if o.Server != "" {
		all, ringErr = fetchSteps(ctx, o.HTTP, strings.TrimRight(o.Server, "/")+"/steps")
	} else {
		ringErr = fmt.Errorf("no csi-hub endpoint given (--server)")
	}
	for _, n := range o.Nodes {
		ns, err := fetchSteps(ctx, o.HTTP, nodeStepsURL(n))
		if err != nil {
			fmt.Fprintf(w, "(node steps from %s not read: %v)\n", n, err)
			continue
		}
		all = append(all, ns...)
	}
	story := Story(all, ref.Object())
	if ref.Kind == "VolumeSnapshot" && len(story) == 0 && o.Snap != nil {
		// A snapshot's steps are its content's: the snapshotter works on the content.
		if vs, err := o.Snap.SnapshotV1().VolumeSnapshots(ref.Namespace).Get(ctx, ref.Name, getOpts); err == nil &&
			vs.Status != nil && vs.Status.BoundVolumeSnapshotContentName != nil {
			story = Story(all, "VolumeSnapshotContent "+*vs.Status.BoundVolumeSnapshotContentName)
		}
	}

	var api []apiStep
	var apiErr error
	created := time.Time{}
	if o.Kube != nil {
		api, created, apiErr = fromAPI(ctx, o.Kube, o.Snap, ref)
	}
	rolled := ringRolled(all)
	needAPI := len(story) == 0 || (rolled && !created.IsZero() && created.Before(story[0].Time))

	fmt.Fprintf(w, "The story of %s\n", ref.Object())
	if ringErr != nil {
		fmt.Fprintf(w, "(csi-hub's steps not read: %v)\n", ringErr)
	}
	n := 0
	seen := map[string]bool{}
	if needAPI {
		switch {
		case o.Kube == nil:
			fmt.Fprintln(w, "\ncsi-hub no longer keeps (or never had) the first steps of this object, and no Kubernetes API was given to read the rest from.")
		case apiErr != nil:
			fmt.Fprintf(w, "\nFrom the Kubernetes API: %v\n", apiErr)
		default:
			if len(story) == 0 {
				fmt.Fprintln(w, "\ncsi-hub's step record has nothing on this object (its steps rolled out of the ring, or happened before csi-hub started). What the API still shows:")
			} else {
				fmt.Fprintln(w, "\nThe first steps have rolled out of csi-hub's step record. What the API still shows:")
			}
			for _, a := range api {
				n++
				fmt.Fprintf(w, "%2d. %s  %s\n", n, stamp(a.time), a.text)
			}
		}
	}
	if len(story) > 0 {
		fmt.Fprintf(w, "\nFrom csi-hub's step record (%d steps):\n", len(story))
		writeSteps(w, story, n, o.Why, seen)
	}
	if len(story) == 0 && (apiErr != nil || o.Kube == nil || len(api) == 0) {
		return fmt.Errorf("nothing known about %s", ref.Object())
	}
	if nodeStepsMissing(story) && len(o.Nodes) == 0 {
		fmt.Fprintln(w, "\nNot seen here: the kubelet's NodeStageVolume/NodePublishVolume (and NodeUnpublish/NodeUnstage/NodeExpand) calls go straight to the driver on the node; give the driver's --steps-endpoint with --node to include them.")
	}
	return nil
}

// writeSteps numbers story's steps from n+1; with why, each kind's paragraph
// follows its first step.
func writeSteps(w io.Writer, story []steps.Step, n int, why bool, seen map[string]bool) int {
	for _, s := range story {
		n++
		fmt.Fprintf(w, "%2d. %s  %s\n", n, stamp(s.Time), Sentence(s))
		key := Key(s)
		if _, ok := Kinds[key]; !ok {
			key = string(s.Kind) + ":*"
		}
		if why && !seen[key] {
			seen[key] = true
			fmt.Fprintf(w, "      %s\n", wrap(Describe(s).Why, 90, "      "))
		}
	}
	return n
}

// WriteStory writes the numbered steps of object from recorded steps, as
// explain does when the ring still holds them all.
func WriteStory(w io.Writer, all []steps.Step, object string, why bool) int {
	return writeSteps(w, Story(all, object), 0, why, map[string]bool{})
}

func nodeStepsMissing(story []steps.Step) bool {
	attached, node := false, false
	for _, s := range story {
		attached = attached || (s.Kind == steps.Seen && s.Action == "va-attached")
		node = node || s.Kind == steps.Node
	}
	return attached && !node
}

// ringRolled: the oldest step kept is not the first one recorded.
func ringRolled(all []steps.Step) bool {
	for _, s := range all {
		if s.Kind != steps.Node {
			return s.Seq > 1
		}
	}
	return false
}

func stamp(t time.Time) string {
	if t.IsZero() {
		return "            "
	}
	return t.Local().Format("15:04:05.000")
}

func wrap(s string, width int, indent string) string {
	var b strings.Builder
	col := 0
	for _, word := range strings.Fields(s) {
		if col > 0 && col+1+len(word) > width {
			b.WriteString("\n" + indent)
			col = 0
		} else if col > 0 {
			b.WriteByte(' ')
			col++
		}
		b.WriteString(word)
		col += len(word)
	}
	return b.String()
}

func nodeStepsURL(n string) string {
	n = strings.TrimRight(n, "/")
	if !strings.HasSuffix(n, "/steps") {
		n += "/steps"
	}
	return n
}

func fetchSteps(ctx context.Context, c *http.Client, url string) ([]steps.Step, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	var out []steps.Step
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return nil, fmt.Errorf("GET %s: %w", url, err)
	}
	return out, nil
}

// apiStep is a step read back from the API: a timestamp and plain words.
type apiStep struct {
	time time.Time
	text string
}

func sortAPISteps(a []apiStep) {
	sort.SliceStable(a, func(i, j int) bool { return a[i].time.Before(a[j].time) })
}
