// Package ctl is `process-wrapper ctl`, the control API's client in the
// wrapper's own binary: it works in an image with no shell and no curl
// (kubectl exec POD -c app -- /process-wrapper/process-wrapper ctl status).
package ctl

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/alecthomas/kong"
	"github.com/process-wrapper/process-wrapper/internal/secret"
	"github.com/process-wrapper/process-wrapper/internal/service"
	"github.com/process-wrapper/process-wrapper/wrapper/cli"
	"github.com/process-wrapper/process-wrapper/wrapper/control"
)

// Exit codes.
const (
	ExitFailed = 1 // the action failed, or no wrapper answers
	ExitUsage  = 2
)

type options struct {
	Socket    string        `name:"socket" default:"${socket}" help:"The wrapper's control socket (its -control-socket; default ${default})." placeholder:"PATH"`
	Address   string        `name:"address" help:"The wrapper's -control-address (TCP), instead of the socket; needs -token-file." placeholder:"HOST:PORT"`
	TokenFile string        `name:"token-file" help:"File holding the bearer token of -address (the wrapper's -control-token-file)." placeholder:"FILE"`
	Output    string        `name:"output" short:"o" enum:"table,json" default:"table" help:"table (for people) or json (the API's objects)."`
	Timeout   time.Duration `name:"timeout" default:"2m" help:"How long to wait for an action (a stop waits for the process's preStop and its exit)."`

	Status  statusCmd `cmd:"" help:"Every process, or one in detail."`
	Start   nameCmd   `cmd:"" help:"Start a process stopped by request, or one that has ended (it waits for its dependsOn)."`
	Stop    stopCmd   `cmd:"" help:"Stop a process (preStop, stop signal, SIGKILL at the deadline); it stays stopped until start."`
	Restart nameCmd   `cmd:"" help:"Stop a process, then start it."`
	Signal  signalCmd `cmd:"" help:"Send a signal to a process's main pid."`
	Logs    logsCmd   `cmd:"" help:"A process's last lines as the wrapper wrote them (the last 8 KiB are kept), and with -f the lines after them."`
}

type logsCmd struct {
	Name   string `arg:"" help:"The process."`
	Lines  int    `name:"lines" short:"n" default:"30" help:"How many of its last lines (default ${default})."`
	Follow bool   `name:"follow" short:"f" help:"Then print its lines as they come, until interrupted."`
}

type statusCmd struct {
	Name string `arg:"" optional:"" help:"A process: show it in detail."`
}

type nameCmd struct {
	Name string `arg:"" help:"The process."`
}

type stopCmd struct {
	Name       string `arg:"" help:"The process."`
	Dependents bool   `name:"dependents" help:"Stop the processes that depend on it first, in reverse order."`
}

type signalCmd struct {
	Name   string `arg:"" help:"The process."`
	Signal string `arg:"" help:"The signal: SIGHUP, HUP or 1."`
}

const ctlEpilog = `
Flags take one dash or two. The socket is -control-socket's default unless the wrapper was given another.

Exit codes:
  0    done
  1    the action failed, or no wrapper answers (the message says which)
  2    bad usage
`

var boolFlags = map[string]bool{"dependents": true, "follow": true, "help": true, "h": true}

// Main runs `ctl` with args (after "ctl") and returns the exit code.
func Main(args []string, stdout, stderr io.Writer) int {
	var o options
	exit := -1
	p, err := kong.New(&o, kong.Name("process-wrapper ctl"),
		kong.Description("Operates the wrapper of this container through its control API."),
		kong.Vars{"socket": cli.DefaultControlSocket},
		kong.Help(cli.SingleDashHelp(ctlEpilog, nil)),
		kong.Writers(stdout, stderr),
		kong.Exit(func(code int) { exit = code }))
	if err != nil {
		fmt.Fprintln(stderr, "ctl:", err)
		return ExitUsage
	}
	kctx, err := p.Parse(service.NormalizeFlags(args, func(n string) bool { return boolFlags[n] }))
	if exit >= 0 {
		return exit // -help
	}
	if err != nil {
		fmt.Fprintln(stderr, "ctl:", err)
		return ExitUsage
	}
	c, err := o.client()
	if err != nil {
		fmt.Fprintln(stderr, "ctl:", err)
		return ExitUsage
	}
	ctx, cancel := context.WithTimeout(context.Background(), o.Timeout)
	defer cancel()
	var proc control.Process
	switch cmd := kctx.Command(); cmd {
	case "status":
		var list control.List
		if err = c.call(ctx, http.MethodGet, "/v1/processes", nil, &list); err == nil {
			return o.printList(stdout, list.Processes)
		}
	case "status <name>":
		if err = c.call(ctx, http.MethodGet, "/v1/processes/"+url.PathEscape(o.Status.Name), nil, &proc); err == nil {
			return o.printOne(stdout, proc)
		}
	case "start <name>", "restart <name>":
		verb := strings.Fields(cmd)[0]
		name := o.Start.Name
		if verb == "restart" {
			name = o.Restart.Name
		}
		if err = c.call(ctx, http.MethodPost, "/v1/processes/"+url.PathEscape(name)+"/"+verb, nil, &proc); err == nil {
			return o.printDone(stdout, verb, proc)
		}
	case "stop <name>":
		path := "/v1/processes/" + url.PathEscape(o.Stop.Name) + "/stop"
		if o.Stop.Dependents {
			path += "?dependents=true"
		}
		if err = c.call(ctx, http.MethodPost, path, nil, &proc); err == nil {
			return o.printDone(stdout, "stop", proc)
		}
	case "signal <name> <signal>":
		if err = c.call(ctx, http.MethodPost, "/v1/processes/"+url.PathEscape(o.Signal.Name)+"/signal", control.SignalRequest{Signal: o.Signal.Signal}, &proc); err == nil {
			return o.printDone(stdout, "signal "+o.Signal.Signal, proc)
		}
	case "logs <name>":
		if o.Logs.Lines < 0 {
			fmt.Fprintln(stderr, "ctl: -lines must be 0 or more")
			return ExitUsage
		}
		path := fmt.Sprintf("/v1/processes/%s/logs?lines=%d", url.PathEscape(o.Logs.Name), o.Logs.Lines)
		if o.Logs.Follow {
			cancel() // a follow runs until interrupted, not for -timeout
			ctx = context.Background()
			path += "&follow=true"
		}
		if err = c.stream(ctx, path, stdout); err == nil {
			return 0
		}
	default:
		fmt.Fprintln(stderr, "ctl: unknown command", cmd)
		return ExitUsage
	}
	fmt.Fprintln(stderr, "ctl:", err)
	return ExitFailed
}

// client talks to the socket, or to -address with the token.
type client struct {
	http  *http.Client
	base  string
	token string
	where string // for errors
}

func (o *options) client() (*client, error) {
	if o.Address != "" {
		if o.TokenFile == "" {
			return nil, errors.New("-address needs -token-file")
		}
		token, err := secret.Read("-token-file", o.TokenFile)
		if err != nil {
			return nil, err
		}
		return &client{http: &http.Client{}, base: "http://" + o.Address, token: token, where: o.Address}, nil
	}
	socket := o.Socket
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", socket)
	}}
	return &client{http: &http.Client{Transport: tr}, base: "http://wrapper", where: socket}, nil
}

// send sends one request and returns the answer of a success, or the
// API's error.
func (c *client) send(ctx context.Context, method, path string, body any) (*http.Response, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return nil, err
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("no wrapper answers at %s: %w", c.where, unwrapURL(err))
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		return nil, apiError(resp, b)
	}
	return resp, nil
}

// call sends one request and decodes the answer into out.
func (c *client) call(ctx context.Context, method, path string, body, out any) error {
	resp, err := c.send(ctx, method, path, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return fmt.Errorf("reading the answer: %w", err)
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("the answer is not the API's: %w", err)
	}
	return nil
}

// stream copies the text answer of a GET to w as it comes.
func (c *client) stream(ctx context.Context, path string, w io.Writer) error {
	resp, err := c.send(ctx, http.MethodGet, path, nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(w, resp.Body); err != nil && ctx.Err() == nil {
		return fmt.Errorf("the wrapper's stream ended: %w", err)
	}
	return nil
}

// apiError is the API's error of an answer that is not a success.
func apiError(resp *http.Response, b []byte) error {
	var e control.Error
	if json.Unmarshal(b, &e) == nil && e.Error != "" {
		return fmt.Errorf("%s (%d)", e.Error, resp.StatusCode)
	}
	return fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(b)))
}

// unwrapURL drops net/http's "Get URL:" around a dial error: the
// message names the socket already.
func unwrapURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

func (o *options) printList(w io.Writer, procs []control.Process) int {
	if o.Output == "json" {
		return printJSON(w, control.List{Processes: procs})
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tSTATE\tREADY\tPID\tRUN\tRESTARTS\tUPTIME\tLAST EXIT\tCPU\tMEMORY\tREASON")
	for _, p := range procs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%s\t%s\t%s\t%s\t%s\n", p.Name, p.State, yesNo(p.Ready), p.PidText(), p.Run, p.Restarts,
			p.UptimeText(), p.LastExitText(), p.CPUText(), p.MemoryText(), oneLine(p.Why()))
	}
	tw.Flush()
	return 0
}

func (o *options) printOne(w io.Writer, p control.Process) int {
	if o.Output == "json" {
		return printJSON(w, p)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(k, v string) { fmt.Fprintf(tw, "%s:\t%s\n", k, v) }
	row("name", p.Name)
	state := p.State
	if p.Held {
		state += " (stopped by request)"
	}
	row("state", state+" since "+p.Since.Local().Format(time.RFC3339))
	if p.Reason != "" {
		row("reason", p.Reason)
	}
	row("ready", yesNo(p.Ready)+notReady(p))
	row("live", yesNo(p.Live))
	row("pid", p.PidText())
	row("run", fmt.Sprintf("%d (restarts %d)", p.Run, p.Restarts))
	row("uptime", p.UptimeText())
	row("last exit", p.LastExitText())
	row("cpu", p.CPUText())
	row("memory", fmt.Sprintf("%s (%d processes in its tree)", p.MemoryText(), p.Tree))
	if p.Essential {
		row("essential", "yes")
	}
	for _, pr := range p.Probes {
		res := "passing"
		if !pr.OK {
			res = "failing"
		}
		if pr.Checks == 0 {
			res = "not checked yet"
		}
		if pr.Reason != "" {
			res += ": " + pr.Reason
		}
		row(pr.Type+" probe", fmt.Sprintf("%s, %s (%d checks)", pr.Kind, res, pr.Checks))
	}
	for _, e := range p.DependsOn {
		row("depends on", e.String())
	}
	if len(p.Dependents) > 0 {
		row("dependents", strings.Join(p.Dependents, ", "))
	}
	tw.Flush()
	return 0
}

func (o *options) printDone(w io.Writer, verb string, p control.Process) int {
	if o.Output == "json" {
		return printJSON(w, p)
	}
	state := p.State
	if p.Pid > 0 {
		state += fmt.Sprintf(" (pid %d)", p.Pid)
	}
	if p.Reason != "" {
		state += ": " + p.Reason
	}
	fmt.Fprintf(w, "%s %s: %s\n", verb, p.Name, state)
	return 0
}

func printJSON(w io.Writer, v any) int {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return ExitFailed
	}
	return 0
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func notReady(p control.Process) string {
	if p.Ready || p.NotReady == "" {
		return ""
	}
	return " (" + p.NotReady + ")"
}

func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 80 {
		s = s[:77] + "..."
	}
	return s
}
