package flow

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

func TestZZRolled(t *testing.T) {
	hub, kc, ref := os.Getenv("LIVE_HUB"), os.Getenv("LIVE_KC"), os.Getenv("LIVE_REF")
	if hub == "" {
		t.Skip()
	}
	all, err := fetchSteps(context.Background(), &http.Client{Timeout: 10 * time.Second}, hub+"/steps")
	if err != nil {
		t.Fatal(err)
	}
	r, _ := ParseRef(ref)
	story := Story(all, r.Object())
	// Keep only the steps after the claim's 8th: as if the ring had rolled over.
	cut := story[min(8, len(story)-1)].Seq
	var kept = all[:0]
	for _, s := range all {
		if s.Seq > cut {
			kept = append(kept, s)
		}
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { json.NewEncoder(w).Encode(kept) }))
	defer srv.Close()
	cfg, _ := clientcmd.BuildConfigFromFlags("", kc)
	kube, _ := kubernetes.NewForConfig(cfg)
	var out bytes.Buffer
	if err := Explain(context.Background(), &out, r, ExplainOptions{Server: srv.URL, Kube: kube}); err != nil {
		t.Fatal(err)
	}
	t.Log("\n" + out.String())
}
