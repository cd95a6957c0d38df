// Package prommerge is the prommerge module of process-wrapper; its issue builds it
// (see the README). It holds no code yet.
package prommerge
