package config

import (
	"strings"
)

// WrapperOnlyEnv lists the variables that configure the wrapper itself or
// carry its secrets; a child does not inherit them. POD_NAMESPACE, NODE_NAME
// and HOSTNAME describe the pod and stay.
var WrapperOnlyEnv = []string{
	"CONFIG", "HANDLE_PREEMPTION", "ENVOY_DRAIN_URL", "METADATA_URL", "HANDLE_TERMINATION",
	"METRICS_SERVER_ADDRESS", "METRICS_JSON_EXTRA_LABELS", "METRICS_EXTRA_LABELS_FILE_PATH",
	"METRICS_EXTRA_LABELS_FILE_EXCLUDE", "LOG_FORMAT", "SHARED_LEASE_SOCKET", "SHARED_LEASE_ETCD_ENDPOINTS", "SHARED_LEASE_TOKEN_FILE",
	"AMQP_PROBE_RABBITMQ_DSN_TEMPLATE", "AMQP_PROBE_RABBITMQ_USER", "AMQP_PROBE_RABBITMQ_PASS",
	"TERMINATION_FOLLOW_CONTAINERS", "SERVICE_ACCOUNT_DIR",
}

// Environ builds the environment of one start of p: the wrapper's own
// environment (base, as from os.Environ) without WrapperOnlyEnv, then the
// env files, then HOME of the configured user (unless set already by a file),
// then envs, each value expanded with $(VAR) against what comes before it.
// It also returns Argv expanded against the result.
func (p *Process) Environ(base []string) (env []string, argv []string, err error) {
	vars := newEnvSet(len(base) + len(p.Env) + 4)
	for _, kv := range base {
		k, v, _ := strings.Cut(kv, "=")
		if wrapperOnly(k) {
			continue
		}
		vars.set(k, v)
	}
	fromFiles := false
	for _, f := range p.EnvFiles {
		kvs, err := ReadEnvFile(f)
		if err != nil {
			return nil, nil, err
		}
		for _, kv := range kvs {
			fromFiles = fromFiles || kv.Key == "HOME"
			vars.set(kv.Key, kv.Value)
		}
	}
	if p.Home != "" && !fromFiles {
		vars.set("HOME", p.Home)
	}
	for _, kv := range p.Env {
		vars.set(kv.Key, Expand(kv.Value, vars.get))
	}
	argv = make([]string, len(p.Argv))
	for i, a := range p.Argv {
		argv[i] = Expand(a, vars.get)
	}
	return vars.list(), argv, nil
}

func wrapperOnly(k string) bool {
	for _, w := range WrapperOnlyEnv {
		if k == w {
			return true
		}
	}
	return false
}

// envSet is an ordered set of variables where a later set replaces the value
// in place.
type envSet struct {
	index map[string]int
	kvs   []KV
}

func newEnvSet(n int) *envSet { return &envSet{index: make(map[string]int, n), kvs: make([]KV, 0, n)} }

func (s *envSet) set(k, v string) {
	if i, ok := s.index[k]; ok {
		s.kvs[i].Value = v
		return
	}
	s.index[k] = len(s.kvs)
	s.kvs = append(s.kvs, KV{Key: k, Value: v})
}

func (s *envSet) get(k string) (string, bool) {
	if i, ok := s.index[k]; ok {
		return s.kvs[i].Value, true
	}
	return "", false
}

func (s *envSet) list() []string {
	out := make([]string, len(s.kvs))
	for i, kv := range s.kvs {
		out[i] = kv.Key + "=" + kv.Value
	}
	return out
}
