import { describe, expect, it } from 'vitest';
import {
  CHOICE_SETTINGS,
  choiceSetting,
  FLAG_SETTINGS,
  flagSetting,
  NUMBER_SETTINGS,
  numberSetting,
  settingsEnvironment,
} from '../../lambda/runtime/settings';

describe('runtime settings, defined once', () => {
  it('reads back what the construct writes, for every setting', () => {
    const written = settingsEnvironment({
      keyCacheTtlSeconds: 12,
      clockSkewMs: 250,
      brakeColdStart: 'braked',
      metricsByTenant: true,
    });
    expect(written).toEqual({
      KEY_CACHE_TTL_SECONDS: '12',
      CLOCK_SKEW_MS: '250',
      BRAKE_COLD_START: 'braked',
      METRICS_BY_TENANT: 'true',
    });
    expect(numberSetting('keyCacheTtlSeconds', written)).toBe(12);
    expect(numberSetting('clockSkewMs', written)).toBe(250);
    expect(choiceSetting('brakeColdStart', written)).toBe('braked');
    expect(flagSetting('metricsByTenant', written)).toBe(true);
  });

  it('gives the default where nothing is written', () => {
    for (const name of Object.keys(NUMBER_SETTINGS) as (keyof typeof NUMBER_SETTINGS)[])
      expect(numberSetting(name, {})).toBe(NUMBER_SETTINGS[name].default);
    expect(choiceSetting('brakeColdStart', {})).toBe(CHOICE_SETTINGS.brakeColdStart.default);
    expect(flagSetting('metricsByTenant', {})).toBe(FLAG_SETTINGS.metricsByTenant.default);
  });

  it('refuses a value it cannot read, naming the variable, instead of running on a guess', () => {
    expect(() => numberSetting('keyCacheTtlSeconds', { KEY_CACHE_TTL_SECONDS: 'thirty' })).toThrow(
      'environment variable KEY_CACHE_TTL_SECONDS is "thirty"; expected a number from 0 to 60',
    );
    expect(() => numberSetting('brakeCacheTtlSeconds', { BRAKE_CACHE_TTL_SECONDS: '600' })).toThrow(
      'expected a number from 0 to 5',
    );
    expect(() => choiceSetting('brakeColdStart', { BRAKE_COLD_START: 'open' })).toThrow(
      'BRAKE_COLD_START is "open"; expected released or braked',
    );
    expect(() => flagSetting('metricsByTenant', { METRICS_BY_TENANT: 'yes' })).toThrow(
      'METRICS_BY_TENANT is "yes"; expected true or false',
    );
  });
});
