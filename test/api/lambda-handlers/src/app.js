// An ES module under a package.json with "type": "module", named as src/app.main.
export const main = async (event) => ({ esm: true, event });
