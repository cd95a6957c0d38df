package main

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

const project = "github.com/process-wrapper/process-wrapper/"

// The floor links what the wrapper's own packages import, no more and no
// less: its time is the wrapper's start without the wrapper's own work.
func TestFloorImportsWhatTheWrapperImports(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-f", `{{.ImportPath}}|{{join .Imports ","}}`, "../../../cmd/process-wrapper").Output()
	if err != nil {
		t.Fatalf("go list the wrapper: %v", err)
	}
	var want []string
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		pkg, imports, _ := strings.Cut(line, "|")
		if !strings.HasPrefix(pkg, project) {
			continue
		}
		for _, imp := range strings.Split(imports, ",") {
			if imp != "" && imp != "unsafe" && !strings.HasPrefix(imp, project) && !slices.Contains(want, imp) {
				want = append(want, imp)
			}
		}
	}
	out, err = exec.Command("go", "list", "-f", `{{join .Imports "\n"}}`, ".").Output()
	if err != nil {
		t.Fatalf("go list the floor: %v", err)
	}
	got := strings.Fields(string(out))
	slices.Sort(want)
	slices.Sort(got)
	for _, p := range want {
		if !slices.Contains(got, p) {
			t.Errorf("the wrapper imports %s; the floor does not", p)
		}
	}
	for _, p := range got {
		if !slices.Contains(want, p) {
			t.Errorf("the floor imports %s; the wrapper's packages do not", p)
		}
	}
}
