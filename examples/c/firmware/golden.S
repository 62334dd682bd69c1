/* The golden inputs and TFLM's outputs for them, embedded as they are (paths from the build:
   -DINPUTS_BIN="..." -DOUTPUTS_BIN="..."). */
    .section .rodata.golden, "a"
    .balign 16
    .global golden_inputs, golden_inputs_end, golden_outputs, golden_outputs_end
golden_inputs:
    .incbin INPUTS_BIN
golden_inputs_end:
    .balign 16
golden_outputs:
    .incbin OUTPUTS_BIN
golden_outputs_end:
