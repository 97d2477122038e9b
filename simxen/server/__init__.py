"""simxen.server"""
