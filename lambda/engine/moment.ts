/**
 * What a container knows about the present when clocks may differ by up to `skewMs`: true time
 * lies somewhere in [early, late]. Anything that gives capacity back (refill, a slot expiring)
 * is judged at `early`; anything that takes capacity (a charge, the slot it is counted in) is
 * stamped at `late`. So a fast clock never sees refill that has not happened, and a slow clock
 * never records a charge that expires too soon. With skewMs = 0 both are the clock's reading.
 */
export interface Moment {
  readonly early: number;
  readonly late: number;
}

export const moment = (now: number, skewMs = 0): Moment => ({ early: now - skewMs, late: now + skewMs });
