package sharedlock

import (
	"context"
	"errors"
	"fmt"
	"go.etcd.io/etcd/server/v3/etcdserver/api/v3client"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/process-wrapper/process-wrapper/internal/logline"
	"github.com/process-wrapper/process-wrapper/internal/secret"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

// Server is a shared-lock server: Handler serves its HTTP API.
type Server struct {
	cfg     Config
	log     *logline.Logger
	etcd    *embed.Etcd // nil with external endpoints
	cli     *clientv3.Client
	waitCli *clientv3.Client // for the waits (cli itself with external endpoints)
	locks   *locks
	metrics *metrics
	token   string // the bearer token of /v1/, or ""

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// New starts the server's etcd side: a client of cfg.Endpoints, or an
// embedded single-node etcd in cfg.DataDir.
func New(cfg Config, log *logline.Logger) (*Server, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, log: log, metrics: newMetrics()}
	if cfg.TokenFile != "" {
		var err error
		if s.token, err = secret.Read("SHARED_LEASE_TOKEN_FILE", cfg.TokenFile); err != nil {
			return nil, err
		}
	}
	if len(cfg.Endpoints) == 0 {
		e, err := startEmbedded(cfg)
		if err != nil {
			return nil, err
		}
		s.etcd = e
		// the in-process client (no network) for the quick calls, and a
		// gRPC client of the embedded etcd's own listener for the waits:
		// the in-process watch stream is a pair of channels without flow
		// control, and hundreds of waiters leaving at once (their watches
		// cancelled together) deadlocked it, which stopped every wait on
		// every lock until a restart
		s.cli = v3client.New(e.Server)
		cli, err := clientv3.New(clientv3.Config{Endpoints: []string{cfg.EmbeddedClientURL}, DialTimeout: cfg.DialTimeout, Logger: zap.NewNop()})
		if err != nil {
			s.closeEtcd()
			return nil, fmt.Errorf("embedded etcd's client: %w", err)
		}
		s.waitCli = cli
		log.Info("embedded etcd started", "data_dir", cfg.DataDir, "client_url", cfg.EmbeddedClientURL)
	} else {
		cli, err := clientv3.New(clientv3.Config{Endpoints: cfg.Endpoints, DialTimeout: cfg.DialTimeout, Logger: zap.NewNop()})
		if err != nil {
			return nil, fmt.Errorf("etcd %v: %w", cfg.Endpoints, err)
		}
		s.cli, s.waitCli = cli, cli
	}
	// the first read checks etcd, and the watch of expiries starts after
	// its revision: no release made once New returns goes unseen
	ctx, cancel := context.WithTimeout(context.Background(), cfg.DialTimeout)
	ping, err := s.cli.Get(ctx, cfg.Prefix+"ping")
	cancel()
	if err != nil {
		s.closeEtcd()
		if s.etcd != nil {
			return nil, fmt.Errorf("embedded etcd: %w", err)
		}
		return nil, fmt.Errorf("etcd %v: %w", cfg.Endpoints, err)
	}
	if s.etcd == nil {
		log.Info("connected to etcd", "endpoints", fmt.Sprint(cfg.Endpoints))
	}
	ended := new(atomic.Int64)
	s.locks = &locks{cli: s.cli, waitCli: s.waitCli, cfg: cfg, metrics: s.metrics, pool: newLeasePool(s.cli, ended),
		ended: ended, released: map[clientv3.LeaseID]int{}, held: map[clientv3.LeaseID]heldBy{}}
	ctx, cancel = context.WithCancel(context.Background())
	s.cancel = cancel
	s.wg.Add(2)
	go func() {
		defer s.wg.Done()
		s.locks.watchExpiries(ctx, ping.Header.Revision+1)
	}()
	go func() {
		defer s.wg.Done()
		s.locks.pool.run(ctx, cfg.DialTimeout)
	}()
	if s.etcd != nil {
		c := &compactor{cli: s.cli, ended: ended, log: log, every: time.Second, after: 100}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			c.run(ctx, cfg.DialTimeout)
		}()
	}
	return s, nil
}

func startEmbedded(cfg Config) (*embed.Etcd, error) {
	ec := embed.NewConfig()
	ec.Dir = cfg.DataDir
	ec.Name = "shared-lock"
	cu, err := url.Parse(cfg.EmbeddedClientURL)
	if err != nil {
		return nil, fmt.Errorf("EmbeddedClientURL: %w", err)
	}
	pu, err := url.Parse(cfg.EmbeddedPeerURL)
	if err != nil {
		return nil, fmt.Errorf("EmbeddedPeerURL: %w", err)
	}
	ec.ListenClientUrls, ec.AdvertiseClientUrls = []url.URL{*cu}, []url.URL{*cu}
	ec.ListenPeerUrls, ec.AdvertisePeerUrls = []url.URL{*pu}, []url.URL{*pu}
	ec.InitialCluster = ec.Name + "=" + pu.String()
	ec.LogLevel = cfg.EtcdLogLevel
	// Every lock taken writes new revisions of the same few keys: without
	// compaction etcd keeps them all, its index slows down and its database
	// grows to the quota (then it refuses writes). Keep the last hour.
	ec.AutoCompactionMode, ec.AutoCompactionRetention = "periodic", "1h"
	e, err := embed.StartEtcd(ec)
	if err != nil {
		return nil, fmt.Errorf("embedded etcd in %s: %w", cfg.DataDir, err)
	}
	select {
	case <-e.Server.ReadyNotify():
		return e, nil
	case <-time.After(60 * time.Second):
		e.Close()
		return nil, errors.New("embedded etcd did not become ready in 60s")
	}
}

// Client returns the server's etcd client (for tests and benchmarks).
func (s *Server) Client() *clientv3.Client { return s.cli }

// Close stops the server's goroutines and its etcd side.
func (s *Server) Close() {
	s.cancel()
	s.wg.Wait()
	s.closeEtcd()
}

func (s *Server) closeEtcd() {
	if s.waitCli != nil {
		s.waitCli.Close()
	}
	if s.cli != nil && s.cli != s.waitCli {
		s.cli.Close()
	}
	if s.etcd != nil {
		s.etcd.Close()
		<-s.etcd.Server.StopNotify()
	}
}
