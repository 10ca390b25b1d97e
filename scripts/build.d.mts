export declare const ROOT: string;
export declare const DIST: string;
export declare const CLI_ENTRY: string;
export declare function staleness(): string | null;
export declare function build(): Promise<{ files: number }>;
export declare function ensureBuilt(): Promise<string>;
