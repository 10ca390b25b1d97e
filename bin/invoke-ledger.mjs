#!/usr/bin/env node
// Runs the TypeScript CLI through tsx's loader (the service ships as source).
import { register } from 'tsx/esm/api';

register();
await import('../apps/cli/main.ts');
