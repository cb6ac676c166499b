package files

import (
	"net/http"
	"path/filepath"
)

// Handler serves the public report archive.
type Handler struct {
	Root string
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	http.ServeFile(w, r, filepath.Join(h.Root, "latest.pdf"))
}
