// Package metadatamock is the metadatamock module of process-wrapper; its issue builds it
// (see the README). It holds no code yet.
package metadatamock
