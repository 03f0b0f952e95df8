package hub

import (
	"os"
	"sort"
)

// ExpandTemplate expands the ${token}s of a secret name or namespace template
// from vars, as the sidecars do for the secrets a class names. unknown lists,
// sorted, the tokens vars lacks; each sidecar words that error its own way.
func ExpandTemplate(tmpl string, vars map[string]string) (out string, unknown []string) {
	out = os.Expand(tmpl, func(k string) string {
		v, ok := vars[k]
		if !ok {
			unknown = append(unknown, k)
		}
		return v
	})
	sort.Strings(unknown)
	return out, unknown
}
