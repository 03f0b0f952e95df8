package flow

import (
	"fmt"
	"sort"
	"strings"

	"github.com/csi-hub/csi-hub/internal/steps"
)

// Story returns the steps of the story object belongs to, oldest first: the
// steps of every object linked to it through a step's Related (a claim, its PV,
// the PV's VolumeAttachments and CSI volume; a snapshot and its content).
// web/flow.js groups lanes the same way.
func Story(all []steps.Step, object string) []steps.Step {
	parent := map[string]string{}
	var find func(string) string
	find = func(x string) string {
		p, ok := parent[x]
		if !ok || p == x {
			parent[x] = x
			return x
		}
		r := find(p)
		parent[x] = r
		return r
	}
	for _, s := range all {
		if s.Object == "" {
			continue
		}
		a := find(s.Object)
		for _, r := range s.Related {
			if b := find(r); a != b {
				parent[b] = a
			}
		}
	}
	root := find(object)
	var out []steps.Step
	for _, s := range all {
		if s.Object != "" && find(s.Object) == root {
			out = append(out, s)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Time.Before(out[j].Time) })
	return out
}

// Sentence says step s in plain words, for a terminal.
func Sentence(s steps.Step) string {
	k := Describe(s)
	var b strings.Builder
	if Failed(s) {
		b.WriteString("FAILED: ")
	}
	who := s.Controller
	switch s.Kind {
	case steps.Trigger:
		fmt.Fprintf(&b, "csi-hub's %s acted on %s: %s", who, s.Object, s.Action)
	case steps.CSI:
		fmt.Fprintf(&b, "csi-hub's %s called %s on the driver -> %s%s", orDefault(who, "hub"), s.Action, s.Result, took(s))
	case steps.Node:
		fmt.Fprintf(&b, "the kubelet called %s on the driver's node service -> %s%s", s.Action, s.Result, took(s))
	case steps.Write:
		fmt.Fprintf(&b, "csi-hub's %s wrote to the Kubernetes API: %s %s -> %s", orDefault(who, "hub"), s.Action, s.Detail, s.Result)
	case steps.Event:
		fmt.Fprintf(&b, "%s event %s on %s: %s", s.Result, s.Action, s.Object, s.Detail)
		if IsWait(s) {
			b.WriteString(" (this is the normal wait for the detach, not a failure: it is retried until the volume is detached)")
		}
	case steps.Seen:
		fmt.Fprintf(&b, "%s: %s %s", orDefault(who, "Kubernetes"), k.Label, s.Object)
		if s.Detail != "" {
			b.WriteString(" (" + s.Detail + ")")
		}
	default:
		fmt.Fprintf(&b, "%s %s %s", s.Kind, s.Action, s.Object)
	}
	if (s.Kind == steps.CSI || s.Kind == steps.Node) && s.Detail != "" {
		b.WriteString(": " + s.Detail)
	}
	return b.String()
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

func took(s steps.Step) string {
	if s.Duration <= 0 {
		return ""
	}
	return " in " + s.Duration.Round(100_000).String()
}
