package flow

import (
	"embed"
	"encoding/json"
	"io/fs"
	"net/http"
)

//go:embed web
var web embed.FS

// Handler serves the /flow page and its files (embedded: no CDN, no build
// step) and /flow/kinds.json, the words for each kind of step. The page reads
// the steps from /steps?watch=true of the same server.
func Handler() http.Handler {
	files, _ := fs.Sub(web, "web")
	static := http.StripPrefix("/flow/", http.FileServer(http.FS(files)))
	kinds, _ := json.Marshal(Kinds)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/flow":
			http.Redirect(w, r, "/flow/"+queryOf(r), http.StatusFound)
		case "/flow/kinds.json":
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write(kinds)
		default:
			static.ServeHTTP(w, r)
		}
	})
}

func queryOf(r *http.Request) string {
	if r.URL.RawQuery == "" {
		return ""
	}
	return "?" + r.URL.RawQuery
}
