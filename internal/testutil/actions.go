package testutil

import (
	"fmt"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/runtime"
	k8stesting "k8s.io/client-go/testing"
)

// APIAction is one request a fake clientset saw, in a comparable form:
// Key is "verb resource[/subresource] [namespace/]name" (e.g. "patch
// volumeattachments/status va1"), Body the patch of a patch request.
type APIAction struct {
	Key  string
	Body string
}

func (a APIAction) String() string {
	if a.Body == "" {
		return a.Key
	}
	return a.Key + " " + a.Body
}

// APIActions renders the requests of a fake clientset, leaving out the
// informers' list and watch.
func APIActions(actions []k8stesting.Action) []APIAction {
	var out []APIAction
	for _, a := range actions {
		verb := a.GetVerb()
		if verb == "list" || verb == "watch" {
			continue
		}
		res := a.GetResource().Resource
		if sub := a.GetSubresource(); sub != "" {
			res += "/" + sub
		}
		name := ""
		switch a := a.(type) {
		case interface{ GetName() string }: // get, patch, delete
			name = a.GetName()
		case interface{ GetObject() runtime.Object }: // create, update
			if o, ok := a.GetObject().(interface{ GetName() string }); ok {
				name = o.GetName()
			}
		}
		if ns := a.GetNamespace(); ns != "" {
			name = ns + "/" + name
		}
		act := APIAction{Key: strings.TrimSpace(fmt.Sprintf("%s %s %s", verb, res, name))}
		if p, ok := a.(k8stesting.PatchAction); ok {
			act.Body = string(p.GetPatch())
		}
		out = append(out, act)
	}
	return out
}

// WantAction is an expected request: its Key, and strings its patch must
// contain and must not contain.
type WantAction struct {
	Key        string
	Contains   []string
	NotContain []string
}

// CompareActions returns what differs between the requests made and those
// wanted, in order; nil when they match.
func CompareActions(got []APIAction, want []WantAction) []string {
	var diffs []string
	gotKeys := make([]string, len(got))
	for i, a := range got {
		gotKeys[i] = a.Key
	}
	wantKeys := make([]string, len(want))
	for i, w := range want {
		wantKeys[i] = w.Key
	}
	if !slices.Equal(gotKeys, wantKeys) {
		return []string{fmt.Sprintf("requests\n  got  %q\n  want %q", gotKeys, wantKeys)}
	}
	for i, w := range want {
		for _, s := range w.Contains {
			if !strings.Contains(got[i].Body, s) {
				diffs = append(diffs, fmt.Sprintf("request %d (%s): body lacks %q: %s", i, w.Key, s, got[i].Body))
			}
		}
		for _, s := range w.NotContain {
			if strings.Contains(got[i].Body, s) {
				diffs = append(diffs, fmt.Sprintf("request %d (%s): body has %q: %s", i, w.Key, s, got[i].Body))
			}
		}
	}
	return diffs
}
