package steps

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// WrapTransport records every mutating API request as a Write step; install it
// with rest.Config.Wrap so every client of the process goes through it.
func (r *Recorder) WrapTransport(rt http.RoundTripper) http.RoundTripper {
	return roundTripper{r: r, next: rt}
}

type roundTripper struct {
	r    *Recorder
	next http.RoundTripper
}

func (t roundTripper) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Method == http.MethodGet || req.Method == http.MethodHead || req.Method == http.MethodOptions {
		return t.next.RoundTrip(req)
	}
	start := time.Now()
	resp, err := t.next.RoundTrip(req)
	result := ""
	if err != nil {
		result = err.Error()
	} else {
		result = strconv.Itoa(resp.StatusCode)
	}
	verb, resource, name := describe(req.Method, req.URL.Path)
	t.r.Record(req.Context(), Step{Kind: Write, Action: verb + " " + resource, Result: result,
		Detail: name, Duration: time.Since(start), Time: start})
	return resp, err
}

// describe turns an API path such as /api/v1/namespaces/ns/persistentvolumeclaims/x/status
// into ("update", "persistentvolumeclaims/status", "x").
func describe(method, path string) (verb, resource, name string) {
	verb = map[string]string{http.MethodPost: "create", http.MethodPut: "update",
		http.MethodPatch: "patch", http.MethodDelete: "delete"}[method]
	if verb == "" {
		verb = strings.ToLower(method)
	}
	parts := strings.Split(strings.Trim(path, "/"), "/")
	// Skip the group/version prefix: api/v1 or apis/<group>/<version>.
	switch {
	case len(parts) >= 2 && parts[0] == "api":
		parts = parts[2:]
	case len(parts) >= 3 && parts[0] == "apis":
		parts = parts[3:]
	}
	if len(parts) >= 2 && parts[0] == "namespaces" && len(parts) > 2 {
		parts = parts[2:]
	}
	if len(parts) == 0 {
		return verb, path, ""
	}
	resource = parts[0]
	if len(parts) >= 2 {
		name = parts[1]
	}
	if len(parts) >= 3 {
		resource += "/" + parts[2]
	}
	return verb, resource, name
}

// Handler serves the recorded steps: GET returns JSON (optionally ?after=<seq>);
// ?watch=true streams new steps as server-sent events, one JSON step per event.
func (r *Recorder) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		// The /flow page served by the controller reads a node's steps from
		// another origin; steps carry no secrets (requests are sanitized).
		w.Header().Set("Access-Control-Allow-Origin", "*")
		after, _ := strconv.ParseUint(req.URL.Query().Get("after"), 10, 64)
		if req.URL.Query().Get("watch") != "true" {
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(r.Recent(after))
			return
		}
		flusher, ok := w.(http.Flusher)
		if !ok {
			http.Error(w, "streaming unsupported", http.StatusInternalServerError)
			return
		}
		ch, cancel := r.Subscribe()
		defer cancel()
		w.Header().Set("Content-Type", "text/event-stream")
		for _, s := range r.Recent(after) {
			writeEvent(w, s)
		}
		flusher.Flush()
		for {
			select {
			case <-req.Context().Done():
				return
			case s := <-ch:
				writeEvent(w, s)
				flusher.Flush()
			}
		}
	})
}

func writeEvent(w http.ResponseWriter, s Step) {
	b, _ := json.Marshal(s)
	fmt.Fprintf(w, "data: %s\n\n", b)
}
