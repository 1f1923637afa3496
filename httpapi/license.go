package httpapi

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/udmg/gateway/fsm"
	"github.com/udmg/gateway/httpapi/wire"
	"github.com/udmg/gateway/licensing"
)

func (a *API) getLicense(w http.ResponseWriter, r *http.Request, _ *principal) {
	writeJSON(w, http.StatusOK, a.licenseView(a.licenseState()))
}

func (a *API) licenseView(st fsm.State) wire.License {
	var out wire.License
	if len(st.License) == 0 {
		out = licenseFields(licensing.Evaluation())
		out.Evaluation, out.Valid = true, true
	} else {
		l, err := licensing.Parse(st.License, licensing.VendorKey, a.now())
		out = licenseFields(l)
		out.Valid = err == nil
		if err != nil {
			out.Problem = err.Error()
		}
	}
	nodes := slices.Collect(maps.Values(st.Nodes))
	slices.SortFunc(nodes, func(x, y fsm.Node) int {
		return cmp.Or(cmp.Compare(x.Seq, y.Seq), strings.Compare(x.ID, y.ID))
	})
	out.Slots = make([]wire.Slot, 0, len(nodes))
	for _, n := range nodes {
		status := n.Status
		if n.ID == a.node.ID() {
			status = string(a.node.Mode())
		}
		out.Slots = append(out.Slots, wire.Slot{NodeID: n.ID, Licensed: n.Licensed, Status: status})
		if n.Licensed {
			out.SlotsUsed++
		}
	}
	return out
}

func licenseFields(l licensing.License) wire.License {
	return wire.License{ID: l.ID, Licensee: l.Licensee, Nodes: l.Nodes, Issued: stampDate(l.Issued), Expires: stampDate(l.Expires)}
}

func stampDate(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

// putLicense installs a license file for the whole cluster after checking
// it here, so that a bad file is refused with its reason instead of being
// replicated.
func (a *API) putLicense(w http.ResponseWriter, r *http.Request, p *principal) {
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, licensing.MaxFileSize))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("license file larger than %d bytes", tooBig.Limit))
			return
		}
		writeError(w, http.StatusBadRequest, "read license file: "+err.Error())
		return
	}
	l, err := licensing.Parse(data, licensing.VendorKey, a.now())
	if err != nil {
		writeError(w, http.StatusBadRequest, "license refused: "+err.Error())
		return
	}
	if !a.apply(w, "install license", fsm.Command{Op: fsm.OpLicenseSet, License: data}) {
		return
	}
	a.log.Info("license installed through the API", "id", l.ID, "licensee", l.Licensee, "nodes", l.Nodes, "expires", l.Expires, "by", p.user)
	writeJSON(w, http.StatusOK, a.licenseView(a.licenseState()))
}
