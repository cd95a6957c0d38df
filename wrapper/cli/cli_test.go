package cli

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/alecthomas/kong"
)

func TestBothDashForms(t *testing.T) {
	for _, args := range [][]string{
		{"-config", "f.yaml", "-debug", "-graceful-shutdown-deadline", "3s", "-skip-commands", "a,b", "-wait-deadline=5s", "-http-address=127.0.0.1:9"},
		{"--config", "f.yaml", "--debug", "--graceful-shutdown-deadline", "3s", "--skip-commands", "a,b", "--wait-deadline=5s", "--http-address=127.0.0.1:9"},
		{"-config=f.yaml", "--debug=true", "-graceful-shutdown-deadline=3s", "--skip-commands=a,b", "-wait-deadline", "5s", "-http-address", "127.0.0.1:9"},
	} {
		o, err := Parse(args, func(int) {})
		if err != nil {
			t.Fatalf("%q: %v", args, err)
		}
		if o.Config != "f.yaml" || !o.Debug || o.GracefulShutdownDeadline != 3*time.Second ||
			!reflect.DeepEqual(o.SkipCommands, []string{"a", "b"}) || o.WaitDeadline != 5*time.Second || o.HTTPAddress != "127.0.0.1:9" {
			t.Errorf("%q parsed to %+v", args, o)
		}
	}
}

func TestDefaults(t *testing.T) {
	o, err := Parse(nil, func(int) {})
	if err != nil {
		t.Fatal(err)
	}
	want := Options{GracefulShutdownDeadline: 10 * time.Second, ReadinessFile: "/tmp/started", HTTPAddress: "0.0.0.0:8111",
		SharedLockURL: "http://localhost:8191", WaitDeadline: 2 * time.Minute, ControlSocket: DefaultControlSocket}
	if !reflect.DeepEqual(*o, want) {
		t.Errorf("defaults %+v", *o)
	}
}

func TestSingleDashBooleans(t *testing.T) {
	o, err := Parse([]string{"-wait", "-version", "-shared-lock", "-envoy-drain", "-debug=false"}, func(int) {})
	if err != nil {
		t.Fatal(err)
	}
	if !o.Wait || !o.Version || !o.SharedLock || !o.EnvoyDrain || o.Debug {
		t.Errorf("%+v", o)
	}
}

func TestBadFlagsAreNamed(t *testing.T) {
	for args, want := range map[string]string{
		"-graceful-shutdown-deadline ten": "--graceful-shutdown-deadline",
		"-no-such-flag":                   "--no-such-flag",
		"--config":                        "--config",
	} {
		_, err := Parse(strings.Fields(args), func(int) {})
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: error %v does not name %s", args, err, want)
		}
	}
}

func TestNormalizeStopsAtTerminator(t *testing.T) {
	got := Normalize([]string{"-config", "x", "--", "-debug", "-x"})
	want := []string{"--config", "x", "--", "-debug", "-x"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %q", got)
	}
	if got := Normalize([]string{"-h", "-graceful-shutdown-deadline", "-1s", "-debug", "-"}); !reflect.DeepEqual(got, []string{"-h", "--graceful-shutdown-deadline", "-1s", "--debug", "-"}) {
		t.Errorf("values and short flags must stay: %q", got)
	}
}

func TestControlAddressNeedsToken(t *testing.T) {
	dir := t.TempDir()
	token, empty := filepath.Join(dir, "token"), filepath.Join(dir, "empty")
	os.WriteFile(token, []byte(" tok3n \n"), 0o600)
	os.WriteFile(empty, []byte("\n"), 0o600)
	for _, c := range []struct {
		args []string
		want string // the error, or "" for none
	}{
		{[]string{"-control-address", "127.0.0.1:9"}, "-control-address needs -control-token-file"},
		{[]string{"-control-address", "127.0.0.1:9", "-control-token-file", empty}, "is empty"},
		{[]string{"-control-address", "127.0.0.1:9", "-control-token-file", filepath.Join(dir, "none")}, "-control-token-file: open"},
		{[]string{"-control-address", "127.0.0.1:9", "-control-token-file", token}, ""},
	} {
		o, err := Parse(c.args, func(int) {})
		switch {
		case c.want == "" && (err != nil || o.ControlToken != "tok3n"):
			t.Errorf("%q: %v, token %q", c.args, err, o.ControlToken)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%q: error %v, want %q", c.args, err, c.want)
		}
	}
}

// Every flag has its help in flagHelp (the tags hold none), a bool flag no
// placeholder, and flagHelp names no other flag.
func TestEveryFlagHasHelp(t *testing.T) {
	p, err := kong.New(&Options{})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, f := range p.Model.Flags {
		if f.Name == "help" {
			continue
		}
		seen[f.Name] = true
		h, ok := flagHelp[f.Name]
		switch {
		case !ok || h.Text == "":
			t.Errorf("-%s has no help", f.Name)
		case f.IsBool() && h.Placeholder != "":
			t.Errorf("-%s takes no value, yet has placeholder %q", f.Name, h.Placeholder)
		case f.Help != "" || f.PlaceHolder != "":
			t.Errorf("-%s has help in its tag", f.Name)
		}
	}
	for name := range flagHelp {
		if !seen[name] {
			t.Errorf("flagHelp names -%s, which is no flag", name)
		}
	}
}

// The command line's share of every start: kong builds its model from the
// tags, then parses.
func BenchmarkParse(b *testing.B) {
	args := []string{"-config", "/etc/process-wrapper.yaml", "-graceful-shutdown-deadline", "20s"}
	for b.Loop() {
		if _, err := Parse(args, func(int) {}); err != nil {
			b.Fatal(err)
		}
	}
}
