export function registerHandlerLoader(): void;
