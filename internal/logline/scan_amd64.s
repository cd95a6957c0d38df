#include "textflag.h"

// func blockSpecial(s []byte) int
//
// A byte c is special when c+0x60, as a signed byte, is above -34: the
// plain range 0x20..0x7e maps to -128..-34, every other byte above it. '"'
// and '\\' are plain by that test and compared for apart.
TEXT ·blockSpecial(SB), NOSPLIT, $0-32
	MOVQ s_base+0(FP), SI
	MOVQ s_len+8(FP), BX
	ANDQ $~15, BX // the end of the whole blocks
	XORQ AX, AX
	MOVQ $0x6060606060606060, DX
	MOVQ DX, X8
	PUNPCKLQDQ X8, X8
	MOVQ $0xdededededededede, DX // -34
	MOVQ DX, X9
	PUNPCKLQDQ X9, X9
	MOVQ $0x2222222222222222, DX // '"'
	MOVQ DX, X10
	PUNPCKLQDQ X10, X10
	MOVQ $0x5c5c5c5c5c5c5c5c, DX // '\\'
	MOVQ DX, X11
	PUNPCKLQDQ X11, X11

loop:
	CMPQ AX, BX
	JAE  done
	MOVOU (SI)(AX*1), X0
	MOVO X0, X1
	PADDB X8, X1
	PCMPGTB X9, X1 // X1 = X1 > -34: out of the plain range
	MOVO X0, X2
	PCMPEQB X10, X2
	PCMPEQB X11, X0
	POR X2, X0
	POR X1, X0
	PMOVMSKB X0, DX
	TESTL DX, DX
	JNZ found
	ADDQ $16, AX
	JMP loop

found:
	BSFL DX, DX
	ADDQ DX, AX

done:
	MOVQ AX, ret+24(FP)
	RET
