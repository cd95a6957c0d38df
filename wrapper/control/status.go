package control

import (
	"fmt"
	"html"
	"net/http"
	"strings"
	"time"

	"github.com/process-wrapper/process-wrapper/wrapper/metrics"
)

// StatusPage is SPEC's /status on -http-address: a read-only page of every
// process that refreshes itself, or with ?format=json the control API's
// list. It reads only: nothing served on -http-address may change state.
func StatusPage(ops Ops, usage func() map[string]metrics.Usage) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		list := list(ops, usage)
		switch f := r.URL.Query().Get("format"); f {
		case "json":
			reply(w, http.StatusOK, list)
			return
		case "", "html":
		default:
			http.Error(w, fmt.Sprintf("format=%q: want html or json", f), http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		var b strings.Builder
		b.WriteString(`<!doctype html><html><head><meta charset="utf-8"><meta http-equiv="refresh" content="2">` +
			`<title>process-wrapper</title><style>body{font-family:sans-serif}td,th{padding:2px 8px;text-align:left}` +
			`.no{color:#b00}.yes{color:#070}</style></head><body><h1>process-wrapper</h1>`)
		fmt.Fprintf(&b, "<p>%s: %d processes (refreshed every 2 s; <a href=\"?format=json\">json</a>)</p>", time.Now().UTC().Format(time.RFC3339), len(list.Processes))
		b.WriteString("<table><tr><th>name</th><th>state</th><th>ready</th><th>live</th><th>pid</th><th>run</th><th>restarts</th>" +
			"<th>uptime</th><th>last exit</th><th>cpu</th><th>memory</th><th>probes</th><th>depends on</th><th>reason</th></tr>")
		for _, p := range list.Processes {
			cell := func(s string) { b.WriteString("<td>" + html.EscapeString(s) + "</td>") }
			yes := func(ok bool) {
				if ok {
					b.WriteString(`<td class="yes">yes</td>`)
				} else {
					b.WriteString(`<td class="no">no</td>`)
				}
			}
			b.WriteString("<tr>")
			cell(p.Name)
			state := p.State
			if p.Held {
				state += " (by request)"
			}
			cell(state)
			yes(p.Ready)
			yes(p.Live)
			cell(p.PidText())
			cell(fmt.Sprint(p.Run))
			cell(fmt.Sprint(p.Restarts))
			cell(p.UptimeText())
			cell(p.LastExitText())
			cell(p.CPUText())
			cell(p.MemoryText())
			var probes, deps []string
			for _, pr := range p.Probes {
				res := "passing"
				if !pr.OK {
					res = "failing"
				}
				probes = append(probes, pr.Type+" "+pr.Kind+": "+res)
			}
			for _, e := range p.DependsOn {
				deps = append(deps, e.String())
			}
			cell(strings.Join(probes, "; "))
			cell(strings.Join(deps, "; "))
			cell(p.Why())
			b.WriteString("</tr>")
		}
		b.WriteString("</table></body></html>\n")
		_, _ = w.Write([]byte(b.String()))
	})
}
