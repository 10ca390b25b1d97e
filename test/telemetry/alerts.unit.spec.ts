// The shipped alerting rules are valid Prometheus rules and behave as their unit tests
// (deploy/prometheus/alerts.test.yml) say: promtool, as an operator would run it.
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { promtool } from './promtool.ts';

const DIR = fileURLToPath(new URL('../../deploy/prometheus/', import.meta.url));

describe('deploy/prometheus/alerts.yml', () => {
  it('passes promtool check rules', () => {
    const r = promtool(['check', 'rules', `${DIR}alerts.yml`]);
    expect(r.output).toContain('SUCCESS: 7 rules found');
    expect(r.ok).toBe(true);
  });

  it('passes its unit tests (promtool test rules)', () => {
    const r = promtool(['test', 'rules', `${DIR}alerts.test.yml`]);
    expect(r.output).toContain('SUCCESS');
    expect(r.ok).toBe(true);
  });
});
