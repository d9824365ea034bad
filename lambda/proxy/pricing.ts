/**
 * What a request costs in micro-dollars (USD per million tokens x tokens): the rates its options
 * select (service tier, audio, cached input), the most a reservation can cost, and what settled
 * usage costs. Every option that changes the price is priced here or refused by validation.
 */
import type { ModelPrice, TierPrice } from '../engine/plans';

/** USD per million tokens for each kind of token a request can be billed for. */
export interface Rates {
  readonly input: number;
  readonly cachedInput: number;
  readonly audioInput: number;
  readonly output: number;
  readonly audioOutput: number;
}

/** Tokens of a settled request, with the parts billed at other rates (each within its total). */
export interface TokenBreakdown {
  readonly input: number;
  readonly output: number;
  readonly cachedInput: number;
  readonly audioInput: number;
  readonly audioOutput: number;
}

/** Whether a request carries audio in (input_audio parts) or asks for audio out. */
export interface AudioUse {
  readonly input: boolean;
  readonly output: boolean;
}

export const NO_AUDIO: AudioUse = { input: false, output: false };

/** The rates of a model at a service tier ('auto', 'default' or none: the model's own prices). */
export function ratesFor(price: ModelPrice, serviceTier?: string): Rates {
  const tier: TierPrice | undefined =
    serviceTier === undefined || serviceTier === 'auto' || serviceTier === 'default'
      ? undefined
      : price.serviceTiers?.[serviceTier];
  const base = tier ?? price;
  return {
    input: base.inputPerMillion,
    cachedInput: Math.min(base.cachedInputPerMillion ?? base.inputPerMillion, base.inputPerMillion),
    audioInput: price.audioInputPerMillion ?? base.inputPerMillion,
    output: base.outputPerMillion,
    audioOutput: price.audioOutputPerMillion ?? base.outputPerMillion,
  };
}

/** The most `input` and `output` tokens can cost: every token at the dearest rate the request can use. */
export function boundMicroUsd(input: number, output: number, rates: Rates, audio: AudioUse): number {
  const inputRate = audio.input ? Math.max(rates.input, rates.audioInput) : rates.input;
  const outputRate = audio.output ? Math.max(rates.output, rates.audioOutput) : rates.output;
  return input * inputRate + output * outputRate;
}

/** What settled tokens cost, each part at its own rate. */
export function costMicroUsd(t: TokenBreakdown, rates: Rates): number {
  const textInput = t.input - t.cachedInput - t.audioInput;
  const textOutput = t.output - t.audioOutput;
  return (
    textInput * rates.input +
    t.cachedInput * rates.cachedInput +
    t.audioInput * rates.audioInput +
    textOutput * rates.output +
    t.audioOutput * rates.audioOutput
  );
}
