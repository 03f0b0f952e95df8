package hub

import (
	"reflect"
	"testing"
)

func TestExpandTemplate(t *testing.T) {
	vars := map[string]string{"pv.name": "pv-1", "pvc.namespace": "ns"}
	if out, unknown := ExpandTemplate("${pvc.namespace}-${pv.name}", vars); out != "ns-pv-1" || unknown != nil {
		t.Errorf("got %q, %v", out, unknown)
	}
	if _, unknown := ExpandTemplate("${z}${pv.name}${a}", vars); !reflect.DeepEqual(unknown, []string{"a", "z"}) {
		t.Errorf("unknown = %v, want [a z]", unknown)
	}
}
