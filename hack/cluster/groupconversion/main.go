package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"
)

// review is the part of an apiextensions.k8s.io/v1 ConversionReview the
// webhook reads and writes.
type review struct {
	APIVersion string    `json:"apiVersion"`
	Kind       string    `json:"kind"`
	Request    *request  `json:"request,omitempty"`
	Response   *response `json:"response,omitempty"`
}

type request struct {
	UID               string            `json:"uid"`
	DesiredAPIVersion string            `json:"desiredAPIVersion"`
	Objects           []json.RawMessage `json:"objects"`
}

type response struct {
	UID              string `json:"uid"`
	ConvertedObjects []any  `json:"convertedObjects"`
	Result           result `json:"result"`
}

type result struct {
	Status  string `json:"status"`
	Message string `json:"message,omitempty"`
}

// handle answers one ConversionReview; a failed conversion is a Failure
// result naming the object, which the apiserver returns to the client.
func handle(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 16<<20))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var in review
	if err := decode(body, &in); err != nil || in.Request == nil {
		http.Error(w, fmt.Sprintf("not a ConversionReview: %v", err), http.StatusBadRequest)
		return
	}
	out := review{APIVersion: in.APIVersion, Kind: in.Kind, Response: &response{UID: in.Request.UID, Result: result{Status: "Success"}}}
	for i, raw := range in.Request.Objects {
		var obj map[string]any
		err := decode(raw, &obj)
		if err == nil {
			err = convert(obj, in.Request.DesiredAPIVersion)
		}
		if err != nil {
			meta, _ := obj["metadata"].(map[string]any)
			msg := fmt.Sprintf("object %d (%v): %v", i, meta["name"], err)
			log.Printf("conversion to %s failed: %s", in.Request.DesiredAPIVersion, msg)
			out.Response = &response{UID: in.Request.UID, ConvertedObjects: []any{}, Result: result{Status: "Failure", Message: msg}}
			break
		}
		out.Response.ConvertedObjects = append(out.Response.ConvertedObjects, obj)
	}
	w.Header().Set("Content-Type", "application/json")
	if err := json.NewEncoder(w).Encode(out); err != nil {
		log.Printf("writing the response: %v", err)
	}
}

func main() {
	listen := flag.String("listen", "127.0.0.1:9443", "address to serve HTTPS on")
	cert := flag.String("tls-cert-file", "", "serving certificate (PEM)")
	key := flag.String("tls-private-key-file", "", "its private key (PEM)")
	flag.Parse()
	if *cert == "" || *key == "" {
		fmt.Fprintln(os.Stderr, "groupconversion: --tls-cert-file and --tls-private-key-file are required")
		os.Exit(2)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/convert", handle)
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	srv := &http.Server{Addr: *listen, Handler: mux, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdown)
	}()
	log.Printf("serving VolumeGroupSnapshotContent conversion on https://%s/convert", *listen)
	if err := srv.ListenAndServeTLS(*cert, *key); err != nil && err != http.ErrServerClosed {
		log.Fatal(err)
	}
}
