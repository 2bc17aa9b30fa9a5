// The test runner's settings at the root, as the real extension has them.
module.exports = { preset: 'ts-jest', testEnvironment: 'node', roots: ['<rootDir>/tests'] };
