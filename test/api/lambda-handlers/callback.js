// Lambda's callback style: the result comes through the callback, later.
exports.handler = function (event, context, callback) {
  setTimeout(() => callback(null, { callback: true, event }), 5);
};
