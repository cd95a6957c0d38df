package relay

import "io"

// keepAbove is the size of an unfinished line past which the buffer is kept
// while the pipe is empty, rather than the line copied aside at every pause
// of a child that writes a long line slowly.
const keepAbove = 4 << 10

// input is the read side of a Source: the buffer of what was read and not
// yet relayed (buf[start:end]), taken from the pool only while there is
// something to read or to keep.
type input struct {
	r     io.Reader // for Source.Run; a Stream reads its pipe itself
	limit int       // the longest line: the buffer grows to hold one
	pool  *[]byte   // the pooled buffer in use, nil while idle or grown
	buf   []byte    // nil while idle
	start int
	end   int
	carry []byte // an unfinished line kept while the buffer is given back
}

func newInput(r io.Reader, limit int) *input {
	return &input{r: r, limit: limit}
}

// take makes sure a buffer with room after what it holds is there: taken
// from the pool with the carried line at its front, its unfinished line
// moved to the front, or grown (up to limit+1) for a line that does not
// fit.
func (in *input) take() {
	if in.buf == nil {
		in.pool = readBufs.Get().(*[]byte)
		in.buf = *in.pool
		in.start, in.end = 0, copy(in.buf, in.carry)
		in.carry = in.carry[:0]
	}
	if in.start == in.end {
		in.start, in.end = 0, 0
	}
	if in.end < len(in.buf) {
		return
	}
	if in.start > 0 {
		in.end = copy(in.buf, in.buf[in.start:in.end])
		in.start = 0
		return
	}
	nb := make([]byte, max(min(2*len(in.buf), in.limit+1), len(in.buf)+1))
	in.end = copy(nb, in.buf[:in.end])
	in.putBack()
	in.buf = nb
}

// idle gives the buffer back while the pipe is empty, keeping a short
// unfinished line aside; a long one keeps its buffer.
func (in *input) idle() {
	if in.buf == nil || in.end-in.start > keepAbove {
		return
	}
	in.carry = append(in.carry[:0], in.buf[in.start:in.end]...)
	in.putBack()
	in.buf, in.start, in.end = nil, 0, 0
}

// putBack returns the pooled buffer (a grown one is left to the GC).
func (in *input) putBack() {
	if in.pool != nil {
		readBufs.Put(in.pool)
		in.pool = nil
	}
}

// read reads what r has and appends it to buf[start:end].
func (in *input) read() (int, error) {
	in.take()
	n, err := in.r.Read(in.buf[in.end:])
	in.end += n
	return n, err
}
