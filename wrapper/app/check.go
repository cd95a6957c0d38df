package app

import (
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/process-wrapper/process-wrapper/internal/logline"
	"github.com/process-wrapper/process-wrapper/wrapper/cli"
	"github.com/process-wrapper/process-wrapper/wrapper/config"
)

// checkMode is process-wrapper check: it validates the config without
// starting anything and prints the start order, level by level (what
// starts together). Exit 0 when the config is valid, 2 with every error
// as a start would print it. What only the host the wrapper runs on can
// tell (users, env files, programs, working directories) is a warning: a
// check may run in CI rather than in the image.
func checkMode(opts *cli.Options, stdout io.Writer, log *logline.Logger) int {
	procs, warns, err := loadConfig(opts, log, config.ParseOffHost)
	for _, w := range warns {
		log.Warn("the host this check runs on lacks what the config names: check in the image that runs it", "err", w)
	}
	if err != nil {
		for _, line := range strings.Split(err.Error(), "\n") {
			log.Error("bad config", "err", line)
		}
		return ExitUsage
	}
	procs = config.Skip(procs, opts.SkipCommands, log)
	for _, p := range procs {
		if w := hostCheck(&p); w != "" {
			log.Warn("the host this check runs on lacks what the config names: check in the image that runs it", "process", p.Name, "err", w)
		}
	}
	source := opts.Config
	if source == "" {
		source = "CONFIG"
	}
	fmt.Fprintf(stdout, "%s: valid, %d processes\n", source, len(procs))
	if len(procs) == 0 {
		return 0
	}
	fmt.Fprintln(stdout, "start order (each level starts once the conditions of its dependsOn hold; the shutdown stops the levels in reverse):")
	for i, level := range config.Levels(procs) {
		fmt.Fprintf(stdout, "  %d: %s\n", i+1, strings.Join(level, " "))
	}
	return 0
}

// hostCheck tells what the host lacks to start p: its env files, its
// chroot, its program, its working directory (what a start checks).
func hostCheck(p *config.Process) string {
	env, argv, err := p.Environ(os.Environ())
	if err == nil {
		_, err = p.Locate(argv[0], env)
	}
	if err != nil {
		return err.Error()
	}
	return ""
}
