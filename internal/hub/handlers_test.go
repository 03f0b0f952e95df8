package hub

import (
	"fmt"
	"slices"
	"testing"
)

func TestHandlers(t *testing.T) {
	var got []string
	h := Handlers(func(old, cur any) { got = append(got, fmt.Sprintf("changed %v->%v", old, cur)) },
		func(obj any) { got = append(got, fmt.Sprintf("deleted %v", obj)) })
	h.OnAdd("a", false)
	h.OnUpdate("a", "b")
	h.OnDelete("b")
	want := []string{"changed <nil>->a", "changed a->b", "deleted b"}
	if !slices.Equal(got, want) {
		t.Errorf("calls %q, want %q", got, want)
	}

	got = nil
	latest := Handlers(Latest(func(cur any) { got = append(got, fmt.Sprint(cur)) }), nil)
	latest.OnAdd("a", false)
	latest.OnUpdate("a", "b")
	latest.OnDelete("b") // no delete handler: nothing
	if want := []string{"a", "b"}; !slices.Equal(got, want) {
		t.Errorf("Latest saw %q, want %q", got, want)
	}
}
